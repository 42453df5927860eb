"""Dynamic micro-batching: concurrent callers' items share one call of a sync batch function.

Callers `await batcher.submit(item)`. One collector task per busy spell gathers items and runs
the batch function off the event loop, one batch at a time, then resolves each caller with its
own result, or with the batch's exception: a failing batch fails only its own callers, and a
cancelled caller is dropped without touching the others.

When to dispatch. A model behind a lock runs one batch at a time anyway, so items that arrive
while a batch runs cost nothing extra to gather: they go together in the next batch. Before a
batch starts, the collector lingers for more items only while `linger(queued)` says more are
likely (the pipeline: more searches are in flight than items are queued), and then at most
`max_wait_ms` after the batch's first item arrived, or until `max_batch` items are queued. A
lone request (the CLI, `fairshare eval`) therefore never waits, and none waits more than
`max_wait_ms` beyond the model's own time.

The collector is created lazily on the running loop and exits when the queue is empty, so no
task outlives a burst of work, and the batcher works under any loop (uvicorn's, a test's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - the conventional name for an item type
R = TypeVar("R")

BatchFn = Callable[[list[I]], Sequence[R]]
OffLoop = Callable[[Callable[[], Sequence[R]]], Awaitable[Sequence[R]]]


@dataclass(slots=True)
class _Pending(Generic[I, R]):
    item: I
    future: asyncio.Future[R]
    arrived: float  # loop time


def _never(queued: int) -> bool:
    return False


class MicroBatcher(Generic[I, R]):
    """Runs `fn` on batches of submitted items; `batches` counts calls of `fn`, `items` items.

    `run` moves the call off the event loop (e.g. `anyio.to_thread.run_sync` with a limiter).
    One event loop at a time: items submitted from a second loop while a first loop's collector
    is busy are not supported.
    """

    def __init__(
        self,
        fn: BatchFn[I, R],
        run: OffLoop[R],
        *,
        max_batch: int,
        max_wait_ms: float,
        linger: Callable[[int], bool] = _never,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if max_wait_ms < 0:
            raise ValueError("max_wait_ms must be >= 0")
        self._fn = fn
        self._run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self._linger = linger
        self.batches = 0
        self.items = 0
        self._pending: list[_Pending[I, R]] = []
        self._running: list[_Pending[I, R]] = []
        self._collector: asyncio.Task[None] | None = None
        self._arrived: asyncio.Event | None = None

    async def submit(self, item: I) -> R:
        """`fn`'s result for `item`, computed in a batch with whatever else is queued."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append(_Pending(item, future, loop.time()))
        if self._collector is None:
            # A fresh event per spell: an asyncio.Event binds to the loop that first waits on it.
            self._arrived = asyncio.Event()
            self._collector = loop.create_task(self._collect())
        elif self._arrived is not None:
            self._arrived.set()
        # Cancelling the caller cancels only this future; the collector skips done futures.
        return await future

    @property
    def queued(self) -> int:
        """Items waiting for a batch (not counting the one running)."""
        return self._live()

    def _live(self) -> int:
        return sum(1 for p in self._pending if not p.future.done())

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                await self._gather(loop, self._pending[0].arrived + self.max_wait_s)
                live = [p for p in self._pending if not p.future.done()]
                batch, rest = live[: self.max_batch], live[self.max_batch :]
                self._pending = rest
                if batch:
                    self._running = batch
                    await self._dispatch(batch)
                    self._running = []
        except BaseException:
            # The collector itself was cancelled (loop shutting down): nobody will answer these.
            for pending in self._running + self._pending:
                pending.future.cancel()
            self._running, self._pending = [], []
            raise
        finally:
            self._collector = None

    async def _gather(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        arrived = self._arrived
        assert arrived is not None
        while (queued := self._live()) < self.max_batch and self._linger(queued):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), remaining)
            except TimeoutError:
                return

    async def _dispatch(self, batch: list[_Pending[I, R]]) -> None:
        items = [p.item for p in batch]
        self.batches += 1
        self.items += len(items)
        try:
            results = await self._run(lambda: self._fn(items))
            if len(results) != len(items):
                raise RuntimeError(f"batch function returned {len(results)} for {len(items)}")
        except Exception as exc:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        for pending, result in zip(batch, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(result)
