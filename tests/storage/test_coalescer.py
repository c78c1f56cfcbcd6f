"""Coalescing concurrent writes: one call per batch, each caller its own result or error."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from monitor.storage.coalescer import Coalescer


class Recorder:
    """A flush function that records its batches and can fail or stall on demand."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.fail_on: int | None = None
        self.gate = threading.Event()
        self.gate.set()

    def flush(self, items: Sequence[int]) -> list[int]:
        self.gate.wait(5)
        self.batches.append(list(items))
        if self.fail_on in items:
            raise RuntimeError("database is locked")
        return [item * 10 for item in items]


def test_submissions_of_one_turn_are_one_call_with_results_in_order() -> None:
    """Fifty concurrent submissions make one flush; each caller gets its own result."""
    recorder = Recorder()

    async def go() -> list[int]:
        coalescer = Coalescer(recorder.flush)
        return list(await asyncio.gather(*(coalescer.submit(n) for n in range(50))))

    assert asyncio.run(go()) == [n * 10 for n in range(50)]
    assert recorder.batches == [list(range(50))]


def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_works() -> None:
    """The batch's exception reaches every caller in it; a later submission succeeds."""
    recorder = Recorder()
    recorder.fail_on = 3

    async def go() -> tuple[list[object], int]:
        coalescer = Coalescer(recorder.flush)
        first = await asyncio.gather(*(coalescer.submit(n) for n in range(5)),
                                     return_exceptions=True)
        recorder.fail_on = None
        return list(first), await coalescer.submit(7)

    outcomes, later = asyncio.run(go())
    assert all(isinstance(o, RuntimeError) and "locked" in str(o) for o in outcomes)
    assert later == 70


def test_submissions_during_a_flush_form_the_next_batch() -> None:
    """What arrives while a batch is being written waits for the next call (group commit)."""
    recorder = Recorder()

    async def go() -> list[int]:
        coalescer = Coalescer(recorder.flush)
        recorder.gate.clear()
        first = asyncio.ensure_future(coalescer.submit(1))
        await asyncio.sleep(0.05)  # the first batch is now inside flush, held by the gate
        more = [asyncio.ensure_future(coalescer.submit(n)) for n in (2, 3)]
        recorder.gate.set()
        return [await first] + [await f for f in more]

    assert asyncio.run(go()) == [10, 20, 30]
    assert recorder.batches == [[1], [2, 3]]


@pytest.mark.parametrize(("count", "size", "batches"), [(10, 4, [4, 4, 2]), (3, 500, [3])])
def test_batches_never_exceed_the_maximum(count: int, size: int, batches: list[int]) -> None:
    """A burst larger than `max_batch` is written in several calls, none larger."""
    recorder = Recorder()

    async def go() -> None:
        coalescer = Coalescer(recorder.flush, max_batch=size)
        await asyncio.gather(*(coalescer.submit(n) for n in range(count)))

    asyncio.run(go())
    assert [len(b) for b in recorder.batches] == batches
