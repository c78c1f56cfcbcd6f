"""The daemon: APScheduler jobs that call the pipeline, and a clean stop on SIGTERM/SIGINT.

One interval job per feed (its own interval or the default, with jitter, coalesced, never two at
once) and one outbox job. Every feed is polled right after start. APScheduler's
`shutdown(wait=True)` does not wait for coroutine jobs, so the daemon tracks its own in-flight
tasks and lets them finish (each stage's writes are single transactions, so stopping between
awaits is safe) before it closes the store.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.config import FeedConfig
from monitor.pipeline import Runtime, deliver_due, poll

log = logging.getLogger("monitor")
GRACE_SECONDS = 30.0


class Daemon:
    """Runs the pipeline on a schedule until told to stop."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.stopping = asyncio.Event()
        self.in_flight: set[asyncio.Task[object]] = set()
        self.scheduler = AsyncIOScheduler(job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": 300})

    def _tracked(self, work: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            if self.stopping.is_set():
                return
            task = asyncio.current_task()
            assert task is not None
            self.in_flight.add(task)
            try:
                await work()
            except Exception:
                log.exception("scheduled job failed; the daemon goes on")
            finally:
                self.in_flight.discard(task)
        return job

    def _schedule(self) -> None:
        poll_config = self.rt.config.poll
        start = datetime.now().astimezone()
        for index, feed in enumerate(self.rt.config.feeds):
            self.scheduler.add_job(
                self._tracked(self._poll_then_deliver(feed)), "interval",
                seconds=feed.interval or poll_config.interval, jitter=poll_config.jitter,
                id=f"feed:{feed.url}", name=feed.title,
                # Spread the first polls over a few seconds instead of one burst.
                next_run_time=start + timedelta(milliseconds=50 * index))
        self.scheduler.add_job(self._tracked(lambda: deliver_due(self.rt)), "interval",
                               seconds=self.rt.config.delivery.interval, id="outbox",
                               next_run_time=start)

    def _poll_then_deliver(self, feed: FeedConfig) -> Callable[[], Awaitable[object]]:
        async def work() -> None:
            report = await poll(feed, self.rt)
            if report.queued:
                await deliver_due(self.rt)
        return work

    def stop(self, reason: str) -> None:
        """Stop taking work; in-flight work finishes."""
        if not self.stopping.is_set():
            log.info("stopping (%s)", reason)
            self.stopping.set()

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop, signal.Signals(signum).name)
        self._schedule()
        self.scheduler.start()
        log.info("monitor started: %d feeds, %d watchlists, %d targets",
                 len(self.rt.config.feeds), len(self.rt.config.watchlists), len(self.rt.targets))
        await self.stopping.wait()
        self.scheduler.shutdown(wait=False)
        if self.in_flight:
            log.info("waiting for %d running jobs to finish", len(self.in_flight))
            _, pending = await asyncio.wait(set(self.in_flight), timeout=GRACE_SECONDS)
            for task in pending:
                task.cancel()
        await self.rt.close()
        log.info("monitor stopped")
        return 0
