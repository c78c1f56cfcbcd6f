"""Parser workers: feed parsing in separate processes, each with a deadline and a memory cap.

feedparser is pure Python and holds the GIL, so parsing in threads gains nothing; a pool of
processes sized to the cores runs parses in parallel. It is also the one bound that holds for
any input: a document that makes feedparser run too long (a million-deep nesting) or grow too
large costs one worker, which is killed and replaced, and the feed gets a clear error. Workers
are recycled after a number of parses, so memory fragmentation cannot accumulate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import resource
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from typing import Any

from monitor.sources.parser import ParsedFeed, parse_feed

log = logging.getLogger("monitor")
RECYCLE_AFTER = 500
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

    def kill(self) -> None:
        """End a worker that overran its deadline."""
        self.process.kill()
        self.process.join(timeout=5)
        self.connection.close()


class ParserPool:
    """A pool of parser processes used from asyncio code; workers start on first use."""

    def __init__(self, size: int = 0, timeout: float = 20.0, memory_limit: int = 0,
                 parse: Callable[..., ParsedFeed] = parse_feed):
        self.size = size or os.cpu_count() or 1
        self.timeout, self.memory_limit, self._parse = timeout, memory_limit, parse
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["monitor.sources.parser"])
        self._idle: asyncio.Queue[_Worker | None] | None = None
        self._workers: set[_Worker] = set()

    def _queue(self) -> asyncio.Queue[_Worker | None]:
        if self._idle is None:
            self._idle = asyncio.Queue()
            for _ in range(self.size):
                self._idle.put_nowait(None)
        return self._idle

    async def parse(self, body: bytes, url: str, name: str = "",
                    headers: Mapping[str, str] | None = None) -> ParsedFeed:
        """Parse `body` in a worker; a clear error when the worker overran or died."""
        idle = self._queue()
        worker = await idle.get()
        try:
            if worker is None:
                worker = await asyncio.to_thread(_Worker, self._context, self.memory_limit,
                                                 self._parse)
                self._workers.add(worker)
            request = (body, url, name, dict(headers or {}))
            result = await asyncio.to_thread(worker.call, request, self.timeout)
            if result is None:
                alive = worker.process.is_alive()
                self._retire(worker, kill=True)
                worker = None
                reason = (f"parsing took longer than {self.timeout:g}s" if alive
                          else "the parser process died (out of memory?)")
                return ParsedFeed(error=reason)
            if worker.jobs >= RECYCLE_AFTER:
                self._retire(worker, kill=False)
                worker = None
            return result
        finally:
            idle.put_nowait(worker)

    def _retire(self, worker: _Worker, kill: bool) -> None:
        self._workers.discard(worker)
        if kill:
            worker.kill()
        else:
            worker.stop()

    def close(self) -> None:
        """Stop every worker."""
        for worker in list(self._workers):
            self._retire(worker, kill=False)
