"""Parser workers: feed parsing in separate processes, each with a deadline and a memory cap.

feedparser is pure Python and holds the GIL, so parsing in threads gains nothing; a pool of
processes sized to the cores runs parses in parallel. It is also the one bound that holds for
any input: a document that makes feedparser run too long (a million-deep nesting) or grow too
large costs one worker, which is killed and replaced, and the feed gets a clear error. Workers
are recycled after a number of parses, so memory fragmentation cannot accumulate, and exit
after a minute without work, so an idle daemon is a single process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import resource
import threading
import time
from collections.abc import Callable, Mapping
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from typing import Any

from monitor.sources.parser import ParsedFeed, parse_feed

log = logging.getLogger("monitor")
RECYCLE_AFTER = 500
IDLE_EXIT = 60.0  # seconds a worker waits for work before it exits
_Request = tuple[bytes, str, str, dict[str, str]]


def _serve(connection: Connection, memory_limit: int,
           parse: Callable[..., ParsedFeed] = parse_feed) -> None:
    """A worker's loop: parse each request until told to stop (None) or the pipe closes."""
    if memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    while True:
        try:
            request: _Request | None = connection.recv()
        except (EOFError, OSError, MemoryError):
            return  # the parent sees the pipe close and reports the worker's death
        if request is None:
            return
        try:
            result = parse(*request)
        except MemoryError:
            result = ParsedFeed(error="parsing needed more memory than allowed")
        except Exception as error:  # a feedparser bug must cost one feed, not the worker
            result = ParsedFeed(error=f"cannot parse: {error.__class__.__name__}")
        try:
            connection.send(result)
        except MemoryError:
            connection.send(ParsedFeed(error="parsed feed too large to return"))


class _Worker:
    """One parser process and the pipe to it."""

    def __init__(self, context: Any, memory_limit: int, parse: Callable[..., ParsedFeed]):
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, memory_limit, parse),
                                       daemon=True, name="monitor-parser")
        self.process.start()
        child.close()
        self.jobs = 0
        self.last_used = time.monotonic()

    def call(self, request: _Request, timeout: float) -> ParsedFeed | None:
        """Parse in the worker; None when it did not answer in time or died."""
        self.jobs += 1
        try:
            self.connection.send(request)
            if not self.connection.poll(timeout):
                return None
            result: ParsedFeed = self.connection.recv()
        except (EOFError, OSError, BrokenPipeError):
            return None
        return result

    def stop(self) -> None:
        """Ask the worker to stop; kill it if it does not."""
        with contextlib.suppress(OSError, BrokenPipeError):
            self.connection.send(None)
        self.process.join(timeout=1)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=1)
        self.connection.close()

    def reap(self) -> None:
        """Wait for a killed worker's exit (off the event loop) and close its pipe."""
        self.process.join(timeout=5)
        self.connection.close()

    def kill(self) -> None:
        """End a worker that overran its deadline."""
        self.process.kill()
        self.process.join(timeout=5)
        self.connection.close()


def _stop_resource_tracker() -> None:
    """Stop the helper process that spawn starts beside its children: our workers share no
    semaphore or memory for it to track, and spawn starts it again with the next worker.
    (A private API, looked up so that its absence only leaves the helper running.)"""
    stop = getattr(resource_tracker._resource_tracker, "_stop", None)
    if stop is not None:
        with contextlib.suppress(Exception):
            stop()


class ParserPool:
    """A pool of parser processes used from asyncio code. Workers start on demand and exit
    after `idle_after` seconds without work, so between polls the daemon is one process."""

    def __init__(self, size: int = 0, timeout: float = 20.0, memory_limit: int = 0,
                 parse: Callable[..., ParsedFeed] = parse_feed, idle_after: float = IDLE_EXIT):
        self.size = size or os.cpu_count() or 1
        self.timeout, self.memory_limit, self._parse = timeout, memory_limit, parse
        self.idle_after = idle_after
        # spawn, not fork (the daemon has threads) nor forkserver (whose server process would
        # stay resident between polls); a worker starts in about 0.2 s.
        self._context = multiprocessing.get_context("spawn")
        self._slots: asyncio.Semaphore | None = None
        self._idle: list[_Worker] = []  # most recently used last
        self._workers: set[_Worker] = set()
        self._reaper: asyncio.TimerHandle | None = None

    @property
    def running(self) -> int:
        """Worker processes alive now."""
        return len(self._workers)

    async def parse(self, body: bytes, url: str, name: str = "",
                    headers: Mapping[str, str] | None = None) -> ParsedFeed:
        """Parse `body` in a worker; a clear error when the worker overran or died."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        async with self._slots:
            worker = self._idle.pop() if self._idle else None
            if worker is None:
                worker = await asyncio.to_thread(_Worker, self._context, self.memory_limit,
                                                 self._parse)
                self._workers.add(worker)
            request = (body, url, name, dict(headers or {}))
            result = await asyncio.to_thread(worker.call, request, self.timeout)
            if result is None:
                alive = worker.process.is_alive()
                self._retire(worker, kill=True)
                reason = (f"parsing took longer than {self.timeout:g}s" if alive
                          else "the parser process died (out of memory?)")
                return ParsedFeed(error=reason)
            if worker.jobs >= RECYCLE_AFTER:
                self._retire(worker, kill=False)
            else:
                worker.last_used = time.monotonic()
                self._idle.append(worker)
                self._arm_reaper()
            return result

    def _arm_reaper(self) -> None:
        """Wake when the longest-idle worker's time is up."""
        if self._reaper is None and self._idle:
            due = min(w.last_used for w in self._idle) + self.idle_after - time.monotonic()
            self._reaper = asyncio.get_running_loop().call_later(max(0.0, due), self._reap)

    def _reap(self) -> None:
        """Stop the workers idle for `idle_after`; look again while any is left."""
        self._reaper = None
        now = time.monotonic()
        for worker in [w for w in self._idle if now - w.last_used >= self.idle_after]:
            self._idle.remove(worker)
            self._workers.discard(worker)
            worker.process.kill()  # idle, between requests: nothing is lost
            threading.Thread(target=worker.reap, daemon=True).start()
        if not self._workers:
            _stop_resource_tracker()
        self._arm_reaper()

    def _retire(self, worker: _Worker, kill: bool) -> None:
        self._workers.discard(worker)
        if kill:
            worker.kill()
        else:
            worker.stop()

    def close(self) -> None:
        """Stop every worker."""
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        self._idle.clear()
        for worker in list(self._workers):
            self._retire(worker, kill=False)
