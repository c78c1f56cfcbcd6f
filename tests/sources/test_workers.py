"""Parser workers: a bounded cost per document whatever it holds, and recovery from a bad one."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from monitor.sources.parser import ParsedFeed, parse_feed
from monitor.sources.workers import ParserPool
from tests.support.payloads import DEEP

GOOD = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        b"<item><title>Russia and the DPRK</title><link>https://a.example/1</link></item>"
        b"</channel></rss>")


def _parse_all(pool: ParserPool, bodies: list[bytes]) -> list[ParsedFeed]:
    async def go() -> list[ParsedFeed]:
        try:
            return [await pool.parse(body, "https://a.example/f") for body in bodies]
        finally:
            pool.close()
    return asyncio.run(go())


def slow_parse(body: bytes, *args: object) -> ParsedFeed:
    """A stand-in parser that never finishes a document marked SLOW."""
    if body == b"SLOW":
        time.sleep(3600)
    return parse_feed(body, *args)  # type: ignore[arg-type]


def test_a_document_that_parses_too_long_costs_one_worker_and_a_clear_error() -> None:
    """A parse that overruns is cut at the deadline; the next document parses normally."""
    slow, good = _parse_all(ParserPool(1, timeout=1, parse=slow_parse), [b"SLOW", GOOD])
    assert slow.error == "parsing took longer than 1s"
    assert [e.title for e in good.entries] == ["Russia and the DPRK"]


def test_a_million_deep_nesting_is_refused_quickly() -> None:
    """The worker refuses a million-deep nesting before feedparser sees it."""
    (deep,) = _parse_all(ParserPool(1, timeout=30), [DEEP])
    assert deep.error == "not a feed: elements nested more than 256 deep"


def greedy_parse(body: bytes, *args: object) -> ParsedFeed:
    """A stand-in parser that needs 2 GB for any document marked GREEDY."""
    if body == b"GREEDY":
        hoard = bytearray(2 * 1024**3)
        return ParsedFeed(title=str(len(hoard)))
    return parse_feed(body, *args)  # type: ignore[arg-type]


def test_a_document_over_the_memory_cap_is_an_error_not_a_crash() -> None:
    """A parse that needs more memory than the cap fails cleanly, and the pool goes on."""
    pool = ParserPool(1, timeout=30, memory_limit=512 * 1024**2, parse=greedy_parse)
    greedy, good = _parse_all(pool, [b"GREEDY", GOOD])
    assert greedy.error == "parsing needed more memory than allowed"
    assert good.error is None


def pid_parse(body: bytes, *args: object) -> ParsedFeed:
    """A stand-in parser that answers with the id of the process that parsed."""
    return ParsedFeed(title=str(os.getpid()))


def test_workers_are_recycled(monkeypatch: pytest.MonkeyPatch) -> None:
    """After RECYCLE_AFTER parses a worker is stopped and a new process takes over, so five
    parses with RECYCLE_AFTER = 2 run in three processes, two parses each but the last."""
    import monitor.sources.workers

    monkeypatch.setattr(monitor.sources.workers, "RECYCLE_AFTER", 2)
    pool = ParserPool(1, parse=pid_parse)
    pids = [int(r.title or 0) for r in _parse_all(pool, [GOOD] * 5)]
    first, second, third = pids[0], pids[2], pids[4]
    assert pids == [first, first, second, second, third]
    assert len({first, second, third, os.getpid()}) == 4
    for pid in (first, second, third):  # the retired workers and, after close(), the last
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_idle_workers_exit_and_start_again_on_demand() -> None:
    """A worker left without work for `idle_after` exits (its process gone, so an idle daemon
    is one process); the next document starts a fresh one."""
    async def go() -> tuple[list[int], bool, list[str]]:
        pool = ParserPool(2, timeout=30, idle_after=0.5)
        try:
            await asyncio.gather(*(pool.parse(GOOD, "https://a.example/f") for _ in range(4)))
            started = pool.running
            pids = [w.process.pid for w in pool._workers]
            for _ in range(200):  # up to 20 s for the reaper
                if pool.running == 0:
                    break
                await asyncio.sleep(0.1)
            gone = all(not _alive(pid) for pid in pids if pid)
            again = await pool.parse(GOOD, "https://a.example/f")
            return [started, pool.running], gone, [e.title for e in again.entries]
        finally:
            pool.close()

    counts, gone, titles = asyncio.run(go())
    assert counts == [2, 1] and gone and titles == ["Russia and the DPRK"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is not alive
        return stat.read().split(") ")[1][0] != "Z"
