"""The daemon: APScheduler jobs that call the pipeline, config reloads, and a clean stop.

Jobs: one interval job per feed (its own interval or the default, with jitter, coalesced,
never two at once), the outbox, a heartbeat log line, a config-file watch, and the systemd
watchdog when systemd asks for one. Every feed is polled right after start.

A config edit (file change or SIGHUP) is validated first; a broken one is logged and the daemon
keeps the last good config. APScheduler's `shutdown(wait=True)` does not wait for coroutine
jobs, so the daemon tracks its own in-flight tasks and lets them finish (each stage's writes
are single transactions, so stopping between awaits is safe) before it closes the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import signal
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.config import Config, FeedConfig, require_work
from monitor.delivery.message import render_note
from monitor.delivery.notifier import send
from monitor.errors import ConfigError, StoreError
from monitor.health import database_notice
from monitor.pipeline import GRACE_SECONDS, Runtime, open_config
from monitor.sources.cadence import describe_seconds
from monitor.storage.database import DatabaseFault
from monitor.surfaces import sdnotify
from monitor.surfaces.web import WebServer, WebState

log = logging.getLogger("monitor")
HEARTBEAT_SECONDS = 60.0
WATCH_SECONDS = 5.0


class PhasedInterval(IntervalTrigger):  # type: ignore[misc]  # apscheduler is untyped
    """An interval trigger whose runs stay on the grid of its start date. APScheduler's own
    counts each run from the previous one, so a first run set by `next_run_time` (every feed
    right after start) would become every feed's phase; and jitter would add up."""

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        after = max(now, previous_fire_time) if previous_fire_time else now
        # On the grid, strictly after `after` (plus jitter): never the run just made again.
        fire: datetime | None = super().get_next_fire_time(None,
                                                           after + timedelta(milliseconds=1))
        return fire


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class Daemon:
    """Runs the pipeline on a schedule until told to stop."""

    def __init__(self, rt: Runtime, config_path: Path):
        self.rt, self.config_path = rt, config_path
        rt.hold_fraction = 0.5
        self.config_digest = _digest(config_path)
        self.config_error: str | None = None  # why the last reload failed, until one succeeds
        self.database_fault: DatabaseFault | None = None  # as last noticed
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
            except StoreError as error:
                log.error("database error, will retry at the next run of this job: %s", error)
            except Exception as error:
                log.error("scheduled job failed (a bug; the daemon goes on): %r", error)
                log.debug("traceback", exc_info=error)
            finally:
                self.in_flight.discard(task)
        return job

    def _feed_job(self, feed: FeedConfig, first_run: datetime | None) -> None:
        # APScheduler pauses a job given `next_run_time=None`: leave the key out instead.
        when = {"next_run_time": first_run} if first_run else {}
        self.scheduler.add_job(
            self._tracked(self._poll_then_deliver(feed)), self._trigger(feed),
            id=f"feed:{feed.url}", name=feed.title, replace_existing=True, **when)

    def _trigger(self, feed: FeedConfig) -> PhasedInterval:
        interval = self.rt.interval_of(feed).seconds
        # Each feed's polls fall at a random phase of its interval (the next between half an
        # interval and one and a half from now). With one common phase, instances sharing a
        # database would not split the feeds: every feed goes to the instance whose phase
        # follows the other's lease, so one took them all.
        phase = datetime.now().astimezone() + timedelta(
            seconds=interval * random.uniform(0.5, 1.5))  # noqa: S311
        return PhasedInterval(seconds=interval, start_date=phase,
                              jitter=self.rt.config.poll.jitter)

    def _follow_pace(self, urls: Sequence[str]) -> None:
        """Reschedule the feeds among `urls` whose interval moved by more than a tenth."""
        feeds = {feed.url: feed for feed in self.rt.config.feeds}
        for url in urls:
            job = self.scheduler.get_job(f"feed:{url}")
            if job is None or url not in feeds:
                continue
            interval = self.rt.interval_of(feeds[url])
            if abs(interval.seconds - job.trigger.interval_length) > interval.seconds / 10:
                log.info("feed %s: polled every %s from now on: %s", feeds[url].title,
                         describe_seconds(interval.seconds), interval.reason)
                job.reschedule(self._trigger(feeds[url]))

    def _schedule(self) -> None:
        start = datetime.now().astimezone()
        for index, feed in enumerate(self.rt.config.feeds):
            # Spread the first polls over a few seconds instead of one burst.
            self._feed_job(feed, start + timedelta(milliseconds=50 * index))
        jobs: list[tuple[str, Callable[[], Awaitable[object]], float]] = [
            ("outbox", self.rt.deliver, self.rt.config.delivery.interval),
            ("heartbeat", self._heartbeat, HEARTBEAT_SECONDS),
            ("health", self._health, self.rt.config.health.interval),
            ("config-watch", self._watch_config, WATCH_SECONDS),
            ("database-watch", self._watch_database, WATCH_SECONDS),
        ]
        period = sdnotify.watchdog_period()
        if period:
            jobs.append(("watchdog", self._watchdog, period))
        for name, work, seconds in jobs:
            when = {"next_run_time": start} if name == "outbox" else {}
            self.scheduler.add_job(self._tracked(work), "interval", seconds=seconds, id=name,
                                   **when)

    def _poll_then_deliver(self, feed: FeedConfig) -> Callable[[], Awaitable[object]]:
        async def work() -> None:
            report = await self.rt.poll(feed)
            self._follow_pace([feed.url, *report.boosted])
            if report.queued:
                await self.rt.deliver()
        return work

    async def _heartbeat(self) -> None:
        await asyncio.to_thread(self.rt.heartbeat)
        rows = await asyncio.to_thread(self.rt.store.feeds.all)
        configured = {f.url for f in self.rt.config.feeds}
        failing = [r.name for r in rows if r.url in configured and r.consecutive_failures]
        outbox = await asyncio.to_thread(self.rt.store.outbox.counts)
        log.info("heartbeat: %d feeds, %d failing%s; outbox %d pending, %d sent, %d expired",
                 len(configured), len(failing), f" ({', '.join(failing[:5])})" if failing else "",
                 outbox["pending"], outbox["sent"], outbox["expired"])
        sdnotify.notify(f"STATUS={len(configured)} feeds, {len(failing)} failing, "
                        f"{outbox['pending']} alerts pending")

    async def _health(self) -> None:
        if await asyncio.to_thread(self.rt.check_health):
            await self.rt.deliver()

    async def _watch_database(self) -> None:
        """Tell the health targets when the database starts failing and when it works again,
        straight through Apprise (the outbox lives in that database)."""
        fault = self.rt.store.database.fault
        notice = database_notice(self.database_fault, fault, datetime.now(UTC))
        self.database_fault = fault
        if notice is None:
            return
        tag, delivery = self.rt.config.health.tag, self.rt.config.delivery
        for target in [t for t in self.rt.targets if tag and tag in t.tags]:
            title, body = render_note(*notice, target.style)
            outcome = await send(target, title, body, target.timeout or delivery.timeout,
                                 target.style.format)
            (log.info if outcome.ok else log.warning)(
                "database notice %r to %s: %s", title, target.label,
                "sent" if outcome.ok else f"failed: {outcome.error}")

    async def _watchdog(self) -> None:
        # Pinged from the event loop after a database round trip: a stuck loop or an
        # unreachable database stops the pings, and systemd restarts the service.
        await asyncio.to_thread(self.rt.store.schema_version)
        sdnotify.notify("WATCHDOG=1")

    async def _watch_config(self) -> None:
        digest = await asyncio.to_thread(_digest, self.config_path)
        if digest is not None and digest != self.config_digest:
            self.config_digest = digest
            await self.reload("the config file changed")

    async def reload(self, reason: str) -> None:
        """Apply an edited config; a broken one is reported and the last good one kept."""
        # What is read now is what the file watch compares against next.
        self.config_digest = await asyncio.to_thread(_digest, self.config_path)
        try:
            config = await asyncio.to_thread(open_config, self.config_path)
            require_work(config)
        except ConfigError as error:
            if str(error) == self.config_error:  # SIGHUP after the file watch saw it, or so
                log.info("config reload (%s): the same error as before, still running the "
                         "last good config", reason)
            else:
                log.error("config reload (%s) failed, keeping the last good config: %s",
                          reason, error)
            self.config_error = str(error)
            return
        resolved = "; the config error is resolved" if self.config_error else ""
        self.config_error = None
        if config == self.rt.config:
            if resolved:
                log.info("config reloaded (%s): the same as the running config%s", reason,
                         resolved)
            return
        if config.database != self.rt.config.database:
            log.warning("config reload: a new database takes effect only after a restart")
            config = config.model_copy(update={"database": self.rt.config.database})
        if config.http != self.rt.config.http:
            log.warning("config reload: a new http.listen takes effect only after a restart")
        self._apply(config)
        log.info("config reloaded (%s): %d feeds, %d watchlists, %d targets%s", reason,
                 len(config.feeds), len(config.watchlists), len(self.rt.targets), resolved)

    def _apply(self, config: Config) -> None:
        old = self.rt.config
        self.rt.reconfigure(config)
        before = {f.url: f for f in old.feeds}
        now = datetime.now().astimezone()
        for feed in config.feeds:
            if feed != before.get(feed.url) or config.poll != old.poll:
                self._feed_job(feed, now if feed.url not in before else None)
        for url in set(before) - {f.url for f in config.feeds}:
            self.scheduler.remove_job(f"feed:{url}")

    def _start_web(self) -> WebServer | None:
        listen = self.rt.config.http.listen
        if not listen:
            return None
        state = WebState(self.rt, lambda: self.scheduler.running and not self.stopping.is_set())
        try:
            web = WebServer(listen, state)
        except OSError as error:
            log.error("http endpoint: cannot listen on %s: %s (the daemon goes on without it)",
                      listen, error)
            return None
        web.start()
        return web

    def stop(self, reason: str) -> None:
        """Stop taking work; in-flight work finishes."""
        if not self.stopping.is_set():
            log.info("stopping (%s)", reason)
            self.stopping.set()

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (SIGHUP reloads the config); returns the exit code."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop, signal.Signals(signum).name)
        loop.add_signal_handler(signal.SIGHUP,
                                lambda: asyncio.ensure_future(self.reload("SIGHUP")))
        self._schedule()
        self.scheduler.start()
        web = self._start_web()
        log.info("monitor started: %d feeds, %d watchlists, %d targets",
                 len(self.rt.config.feeds), len(self.rt.config.watchlists), len(self.rt.targets))
        sdnotify.notify(f"READY=1\nSTATUS=polling {len(self.rt.config.feeds)} feeds")
        await self.stopping.wait()
        sdnotify.notify("STOPPING=1")
        # Shutting APScheduler down cancels running coroutine jobs: pause it, let them finish,
        # and only then shut it down.
        self.scheduler.pause()
        if self.in_flight:
            log.info("waiting for %d running jobs to finish", len(self.in_flight))
            _, pending = await asyncio.wait(set(self.in_flight), timeout=GRACE_SECONDS)
            for task in pending:
                task.cancel()
        self.scheduler.shutdown(wait=False)
        if web is not None:
            web.stop()
        await self.rt.close()
        log.info("monitor stopped")
        return 0
