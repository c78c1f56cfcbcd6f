"""Coalescing: many small database writes from concurrent polls, done as one transaction.

A poll cycle starts every feed's poll at once, and each would take its lease in a transaction of
its own, then record a 304 in another: a commit each, and most of a warm cycle's database CPU.
A `Coalescer` collects what the polls submit while the event loop runs them and hands the batch
to one blocking call in a worker thread (group commit); whatever arrives during that call forms
the next batch. Each caller awaits its own result, or the batch's exception, exactly as if it had
made the call alone: nothing is delayed when polls are rare.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Coalescer(Generic[Item, Result]):
    """Runs `flush(items) -> results` (same order) in a thread for items submitted together."""

    def __init__(self, flush: Callable[[Sequence[Item]], Sequence[Result]],
                 max_batch: int = 500):
        self._flush, self._max = flush, max_batch
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._running = False

    async def submit(self, item: Item) -> Result:
        """`flush([item, …])`'s result for `item`."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            await asyncio.sleep(0)  # let every poll started in this turn submit first
            while self._waiting:
                batch, self._waiting = self._waiting[:self._max], self._waiting[self._max:]
                try:
                    results = await asyncio.to_thread(self._flush, [item for item, _ in batch])
                except Exception as error:  # each caller gets it, as if it had called alone
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._running = False
