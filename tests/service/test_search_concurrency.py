"""Concurrent searches through the ASGI app: shared forward passes, and a loop that never stalls.

No timings are asserted: a gate (a threading.Event) holds the embedder inside its forward pass
for as long as the test needs, and counts show what was batched.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import anyio.to_thread
import httpx
import numpy as np
import pytest
import pytest_asyncio
from numpy.typing import NDArray

from ranking.embedder import Embedder
from ranking.pipeline import SearchPipeline
from service.runtime import Runtime
from tests.ranking.counting import CountingEmbedder

GUARD_S = 30  # a bound against a hang, not a timing assertion


class GatedEmbedder(CountingEmbedder):
    """The real embedder; each forward pass counts, and may be held until the test opens it."""

    def __init__(self, inner: Embedder) -> None:
        super().__init__(inner)
        self.entered = threading.Event()
        self.open = threading.Event()
        self.open.set()
        self.holding = 0  # queries in the pass being held

    def embed_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.holding = len(texts)
        self.entered.set()
        assert self.open.wait(GUARD_S)
        return super().embed_queries(texts)


@pytest.fixture
def gated(demo_runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> GatedEmbedder:
    """The demo runtime serving through a fresh pipeline (empty caches) on a gated embedder."""
    embedder = GatedEmbedder(demo_runtime.embedder)
    monkeypatch.setattr(demo_runtime, "pipeline", fresh_pipeline(demo_runtime, embedder))
    return embedder


def fresh_pipeline(runtime: Runtime, embedder: Embedder) -> SearchPipeline:
    current = runtime.pipeline
    return SearchPipeline(
        embedder,
        current.vectors,
        current.lexical,
        current.reranker,
        candidate_depth=current.candidate_depth,
        rerank_depth=current.rerank_depth,
        embedder_languages=current.embedder_languages,
    )


@pytest_asyncio.fixture
async def key(demo_runtime: Runtime) -> str:
    """A key of its own, so these requests spend no other test's rate-limit burst."""
    _, secret = await demo_runtime.keys.create_key(customer="concurrency-agent", role="agent")
    return secret


async def post_search(client: httpx.AsyncClient, key: str, query: str) -> httpx.Response:
    return await client.post(
        "/v1/search", json={"query": query, "top_k": 3}, headers={"Authorization": f"Bearer {key}"}
    )


async def test_healthz_answers_while_a_search_is_inside_the_model(
    client: httpx.AsyncClient, key: str, gated: GatedEmbedder
) -> None:
    gated.open.clear()
    search = asyncio.create_task(post_search(client, key, "statin therapy after a stroke"))
    try:
        assert await anyio.to_thread.run_sync(gated.entered.wait, GUARD_S)
        health = await client.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert not search.done()  # the search is still held in the model
    finally:
        gated.open.set()
    assert (await search).status_code == 200


async def test_a_search_held_in_the_model_does_not_hold_up_another_ones_commit(
    client: httpx.AsyncClient, key: str, demo_runtime: Runtime, gated: GatedEmbedder
) -> None:
    cached = "tenant deposit deductions"
    assert (await post_search(client, key, cached)).status_code == 200  # its vector is cached
    gated.open.clear()
    held = asyncio.create_task(post_search(client, key, "statin therapy after a stroke"))
    try:
        assert await anyio.to_thread.run_sync(gated.entered.wait, GUARD_S)
        other = await post_search(client, key, cached)
        assert other.status_code == 200, other.text
        recorded = await demo_runtime.hits.hits_for_query(other.json()["query_id"])
        assert [h.chunk_id for h in recorded] == [r["chunk_id"] for r in other.json()["results"]]
        assert not held.done()  # committed and answered while the first was still in the model
    finally:
        gated.open.set()
    assert (await held).status_code == 200


QUERIES = [
    "anticoagulation for atrial fibrillation",
    "adverse possession of land",
    "quarterly revenue guidance",
    "hypertension first-line treatment",
    "breach of contract damages",
    "dividend policy changes",
    "sepsis early antibiotics",
    "negligence duty of care",
]


async def test_eight_concurrent_searches_share_forward_passes(
    client: httpx.AsyncClient, key: str, demo_runtime: Runtime, gated: GatedEmbedder
) -> None:
    alone = [(await post_search(client, key, q)).json() for q in QUERIES]
    assert gated.calls == [1] * 8

    # Again, on empty caches, all at once. The first forward pass is held inside the model until
    # every other query has queued behind it, so what batching does is not left to the scheduler.
    gated.calls.clear()
    gated.entered.clear()
    gated.open.clear()
    pipeline = fresh_pipeline(demo_runtime, gated)
    demo_runtime.pipeline = pipeline
    searches = [asyncio.create_task(post_search(client, key, q)) for q in QUERIES]
    try:
        assert await anyio.to_thread.run_sync(gated.entered.wait, GUARD_S)
        for _ in range(GUARD_S * 100):
            if pipeline.embed_batcher.queued == len(QUERIES) - gated.holding:
                break
            await asyncio.sleep(0.01)
    finally:
        gated.open.set()
    responses = await asyncio.gather(*searches)

    assert all(r.status_code == 200 for r in responses)
    # At most two forward passes for eight queries: the held one (which, when the searches
    # reach the model within one batch wait of each other, is all eight) and one for everything
    # that queued behind it.
    assert sum(gated.calls) == 8 and len(gated.calls) == pipeline.embed_batcher.batches <= 2
    for response, want in zip(responses, alone, strict=True):
        got = response.json()["results"]
        assert [r["chunk_id"] for r in got] == [r["chunk_id"] for r in want["results"]]
        assert [r["score"] for r in got] == pytest.approx(
            [r["score"] for r in want["results"]], abs=1e-5
        )
