"""The cross-encoder stage with a reranker built from the packaged MiniLM weights.

This model's scoring head is freshly initialised, so these tests prove the stage's mechanics
(loaded, applied to the head of the fused list, reported) and nothing about ranking quality.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio.to_thread
import httpx
import msgspec
import pytest
import pytest_asyncio

from contracts import SearchResponse
from ranking.rerank import CrossEncoderReranker, PairScorer, load_reranker
from service.app import create_app
from service.runtime import Runtime, open_runtime
from tests.conftest import asgi_client
from tests.ranking.counting import CountingScorer
from tests.service.test_observability import metric_samples

GUARD_S = 30  # a bound against a hang, not a timing assertion


@pytest_asyncio.fixture(scope="module")
async def reranking(
    demo_runtime: Runtime, test_reranker_path: Path
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient, str]]:
    settings = demo_runtime.settings.with_(reranker_model=str(test_reranker_path), rerank_depth=10)
    async with open_runtime(settings, with_qdrant=False) as runtime:
        _, key = await runtime.keys.create_key(customer="rerank-agent", role="agent")
        async with asgi_client(create_app(runtime=runtime)) as client:
            yield runtime, client, key


async def _search(client: httpx.AsyncClient, key: str, **body: object) -> SearchResponse:
    response = await client.post(
        "/v1/search", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    return msgspec.json.decode(response.content, type=SearchResponse)


async def test_reranked_head_is_ordered_by_cross_encoder_scores(
    reranking: tuple[Runtime, httpx.AsyncClient, str],
) -> None:
    runtime, client, key = reranking
    query = "anticoagulation for atrial fibrillation"
    result = await _search(client, key, query=query, top_k=5)
    assert result.reranked is True
    assert result.timings_ms.rerank > 0
    reranker = runtime.reranker.reranker
    assert isinstance(reranker, CrossEncoderReranker)
    passages = await runtime.catalog.get_passages([r.chunk_id for r in result.results])
    expected = reranker.score(
        query,
        [
            (r.chunk_id, f"{passages[r.chunk_id].title}\n{passages[r.chunk_id].text}")
            for r in result.results
        ],
    )
    assert [r.score for r in result.results] == [round(s, 6) for s in expected]
    assert expected == sorted(expected, reverse=True)


async def test_rerank_can_be_turned_off_per_request(
    reranking: tuple[Runtime, httpx.AsyncClient, str],
) -> None:
    _, client, key = reranking
    result = await _search(client, key, query="adverse possession", top_k=3, rerank=False)
    assert result.reranked is False and result.timings_ms.rerank == 0


async def test_readyz_reports_the_loaded_reranker(
    reranking: tuple[Runtime, httpx.AsyncClient, str], test_reranker_path: Path
) -> None:
    _, client, _ = reranking
    reranker = (await client.get("/readyz")).json()["checks"]["reranker"]
    assert reranker["loaded"] is True and str(test_reranker_path) in reranker["detail"]


def test_unloadable_reranker_is_reported_not_raised(tmp_path: Path) -> None:
    status = load_reranker(str(tmp_path / "no-such-model"))
    assert status.reranker is None and "could not be loaded" in status.detail
    assert load_reranker("").detail.startswith("no reranker configured")


async def test_metrics_count_model_calls_and_cache_hits(
    reranking: tuple[Runtime, httpx.AsyncClient, str],
) -> None:
    _, client, key = reranking
    query = "metrics probe: an unusual question about tidal easements"
    before = await metric_samples(client)
    first = await _search(client, key, query=query, top_k=3)
    middle = await metric_samples(client)
    again = await _search(client, key, query=query, top_k=3)
    after = await metric_samples(client)
    assert first.reranked and again.reranked

    def delta(
        start: dict[tuple[str, tuple[tuple[str, str], ...]], float],
        end: dict[tuple[str, tuple[tuple[str, str], ...]], float],
        name: str,
        **labels: str,
    ) -> float:
        key = (name, tuple(sorted(labels.items())))
        return end.get(key, 0.0) - start.get(key, 0.0)

    # A new query: one embedding call of one query, and one cross-encoder call over its head.
    assert delta(before, middle, "fairshare_model_batch_size_count", stage="embed") == 1
    assert delta(before, middle, "fairshare_model_batch_size_sum", stage="embed") == 1
    assert delta(before, middle, "fairshare_model_batch_size_count", stage="rerank") == 1
    lookups = "fairshare_model_cache_lookups_total"
    assert delta(before, middle, lookups, stage="embed", result="miss") == 1
    pairs = delta(before, middle, lookups, stage="rerank", result="miss")
    assert pairs >= 3
    # The same query again: both caches answer, and no model runs.
    assert delta(middle, after, "fairshare_model_batch_size_count", stage="embed") == 0
    assert delta(middle, after, "fairshare_model_batch_size_count", stage="rerank") == 0
    assert delta(middle, after, lookups, stage="embed", result="hit") == 1
    assert delta(middle, after, lookups, stage="rerank", result="hit") == pairs


class GatedScorer(CountingScorer):
    """The real cross-encoder, held inside its forward pass until the test opens the gate."""

    def __init__(self, inner: PairScorer) -> None:
        super().__init__(inner)
        self.entered = threading.Event()
        self.open = threading.Event()

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        self.entered.set()
        assert self.open.wait(GUARD_S)
        return super().score_pairs(pairs)


async def test_a_slow_rerank_stalls_neither_health_nor_another_search(
    reranking: tuple[Runtime, httpx.AsyncClient, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, client, key = reranking
    reranker = runtime.reranker.reranker
    assert isinstance(reranker, CrossEncoderReranker)
    gated = GatedScorer(reranker.scorer)
    monkeypatch.setattr(reranker, "scorer", gated)
    slow = asyncio.create_task(
        _search(client, key, query="a question nobody reranked before: tidal rights", top_k=3)
    )
    try:
        assert await anyio.to_thread.run_sync(gated.entered.wait, GUARD_S)
        assert (await client.get("/healthz")).status_code == 200
        other = await _search(client, key, query="duty of care", top_k=2, rerank=False)
        recorded = await runtime.hits.hits_for_query(other.query_id)
        assert [h.chunk_id for h in recorded] == [r.chunk_id for r in other.results]
        assert not slow.done()  # answered and committed while the rerank was still running
    finally:
        gated.open.set()
    assert (await slow).reranked
