"""The micro-batcher: batching, bounds, failure and cancellation isolation. No timings asserted.

A gate (a threading.Event the batch function blocks on) holds the first batch in the model, so
what queues meanwhile is known exactly, instead of depending on how fast anything runs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import anyio.to_thread
import pytest

from ranking.batching import MicroBatcher

T = TypeVar("T")
# A guard against a hang, not a timing assertion: nothing here should take a fraction of it.
GUARD_S = 30


async def off_loop(fn: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(fn)


class GatedModel:
    """Upper-cases strings in batches; the first batch blocks until `release` is set."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: list[str]) -> Sequence[str]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.entered.set()
            self.release.wait(GUARD_S)
        if "bad" in items:
            raise ValueError("model failed")
        return [item.upper() for item in items]

    async def wait_entered(self) -> None:
        assert await anyio.to_thread.run_sync(self.entered.wait, GUARD_S)


def batcher(model: GatedModel, **options: object) -> MicroBatcher[str, str]:
    settings: dict[str, object] = {"max_batch": 32, "max_wait_ms": 2.0, **options}
    return MicroBatcher(model, off_loop, **settings)  # type: ignore[arg-type]


async def test_concurrent_callers_share_one_call() -> None:
    model = GatedModel()
    model.release.set()
    # Lingers until all eight have queued: a long wait bound that must never be reached.
    shared = batcher(model, max_wait_ms=GUARD_S * 1000, linger=lambda queued: queued < 8)
    words = [f"w{i}" for i in range(8)]
    results = await asyncio.wait_for(asyncio.gather(*(shared.submit(w) for w in words)), GUARD_S)
    assert results == [w.upper() for w in words]
    assert shared.batches == 1 and model.batches == [words]
    assert shared._collector is None  # no task outlives the work


async def test_items_queued_while_the_model_is_busy_go_in_the_next_batch() -> None:
    model = GatedModel()
    shared = batcher(model)
    first = asyncio.create_task(shared.submit("a"))
    await model.wait_entered()
    rest = [asyncio.create_task(shared.submit(w)) for w in ("b", "c", "d")]
    await asyncio.sleep(0)
    model.release.set()
    assert await first == "A"
    assert [await t for t in rest] == ["B", "C", "D"]
    assert model.batches == [["a"], ["b", "c", "d"]]


async def test_a_lone_item_does_not_wait_when_nothing_else_is_in_flight() -> None:
    model = GatedModel()
    model.release.set()
    # An hour-long wait bound: only the in-flight rule lets this finish at all.
    shared = batcher(model, max_wait_ms=3_600_000, linger=lambda queued: queued < 1)
    assert await asyncio.wait_for(shared.submit("x"), GUARD_S) == "X"


async def test_max_batch_bounds_each_call() -> None:
    model = GatedModel()
    model.release.set()
    shared = batcher(model, max_batch=3)
    words = [f"w{i}" for i in range(8)]
    assert await asyncio.gather(*(shared.submit(w) for w in words)) == [w.upper() for w in words]
    assert [len(b) for b in model.batches] == [3, 3, 2]


async def test_a_failing_batch_fails_only_its_own_callers() -> None:
    model = GatedModel()
    shared = batcher(model, max_batch=2)
    first = asyncio.create_task(shared.submit("a"))
    await model.wait_entered()
    queued = [asyncio.create_task(shared.submit(w)) for w in ("bad", "b", "c", "d")]
    await asyncio.sleep(0)
    model.release.set()
    outcomes = await asyncio.gather(first, *queued, return_exceptions=True)
    assert model.batches == [["a"], ["bad", "b"], ["c", "d"]]
    assert outcomes[0] == "A" and outcomes[3:] == ["C", "D"]
    assert all(isinstance(o, ValueError) for o in outcomes[1:3])
    # The batcher carries on after a failure.
    assert await shared.submit("e") == "E"


async def test_a_cancelled_caller_does_not_break_the_others() -> None:
    model = GatedModel()
    shared = batcher(model)
    running = asyncio.create_task(shared.submit("a"))
    beside = asyncio.create_task(shared.submit("a2"))
    await model.wait_entered()
    queued = {w: asyncio.create_task(shared.submit(w)) for w in ("b", "c", "d")}
    await asyncio.sleep(0)
    # One caller gives up while its batch is in the model, one while it is queued.
    running.cancel()
    queued["c"].cancel()
    model.release.set()
    assert await beside == "A2"
    assert await queued["b"] == "B" and await queued["d"] == "D"
    with pytest.raises(asyncio.CancelledError):
        await running
    with pytest.raises(asyncio.CancelledError):
        await queued["c"]
    # The queued caller that left was never sent to the model.
    assert model.batches == [["a", "a2"], ["b", "d"]]
    assert shared._collector is None


def test_bounds_are_validated() -> None:
    with pytest.raises(ValueError):
        batcher(GatedModel(), max_batch=0)
    with pytest.raises(ValueError):
        batcher(GatedModel(), max_wait_ms=-1)
