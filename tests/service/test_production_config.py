"""The production shape: PostgreSQL for catalog and ledger, Qdrant serving the dense candidates.

Same code as the embedded default, chosen by configuration (FAIRSHARE_DATABASE_URL,
FAIRSHARE_VECTOR_BACKEND); searched through the real app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
import pytest
import pytest_asyncio

from contracts import SearchResponse
from ranking.pipeline import SearchPipeline
from service.app import create_app
from service.demo import load_demo_catalog
from service.runtime import Runtime, open_runtime
from tests.conftest import asgi_client, make_settings
from tests.postgres import PostgresUnavailable, drop_postgres_database, fresh_postgres_database


@pytest_asyncio.fixture(scope="module")
async def production(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str | PostgresUnavailable
) -> AsyncIterator[tuple[Runtime, str]]:
    if isinstance(postgres_url, PostgresUnavailable):
        pytest.fail(f"PostgreSQL unavailable: {postgres_url}")
    database_url = await fresh_postgres_database(postgres_url)
    settings = make_settings(
        tmp_path_factory.mktemp("prod"), database_url=database_url, vector_backend="qdrant"
    )
    try:
        async with open_runtime(settings) as runtime:
            assert runtime.qdrant is not None and runtime.pipeline.vectors is runtime.qdrant
            await load_demo_catalog(runtime, progress=False, only={"market-notes"})
            _, key = await runtime.keys.create_key(customer="prod-agent", role="agent")
            yield runtime, key
    finally:
        await drop_postgres_database(postgres_url, database_url)


async def test_search_and_statement_on_postgres_with_qdrant(
    production: tuple[Runtime, str],
) -> None:
    runtime, key = production
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "pg-1"}
    body = {"query": "stablecoin loses its dollar peg over reserve quality", "top_k": 4}
    async with asgi_client(create_app(runtime=runtime)) as client:
        first = await client.post("/v1/search", json=body, headers=headers)
        assert first.status_code == 200, first.text
        result = msgspec.json.decode(first.content, type=SearchResponse)
        assert result.results[0].citation.document_id == "solace-usd-stablecoin-depeg"
        replay = await client.post("/v1/search", json=body, headers=headers)
        assert replay.content == first.content
        conflict = await client.post("/v1/search", json={**body, "top_k": 5}, headers=headers)
        assert conflict.status_code == 409

        hits = await runtime.hits.hits_for_query(result.query_id)
        assert len(hits) == 4 and sum(h.price_micros for h in hits) == result.cost_micros
        owner_id = result.results[0].citation.owner_id
        _, admin = await runtime.keys.create_key(customer="prod-admin", role="admin")
        period = datetime.now(UTC).strftime("%Y-%m")
        statement = (
            await client.get(
                f"/v1/owners/{owner_id}/statement?period={period}",
                headers={"Authorization": f"Bearer {admin}"},
            )
        ).json()
    # 1333 micros at 7500 bps: 999.75 rounds half up to 1000 for the owner, per hit.
    assert statement["hit_count"] == 4
    assert statement["gross_micros"] == 4 * 1333 == result.cost_micros
    assert statement["owner_micros"] == 4 * 1000
    assert statement["platform_micros"] == 4 * 333


async def test_qdrant_and_faiss_rank_the_same(production: tuple[Runtime, str]) -> None:
    runtime, _ = production
    faiss_pipeline = SearchPipeline(runtime.embedder, runtime.faiss, runtime.lexical, None)
    generations = await runtime.catalog.generations()

    async def no_texts(ids: object) -> dict[str, str]:
        return {}

    for query in [
        "copper price record after mine flooding",
        "central bank raises rates",
        "EV recall",
    ]:
        via_qdrant = await runtime.pipeline.search(
            query, generations=generations, rerank=False, texts=no_texts
        )
        via_faiss = await faiss_pipeline.search(
            query, generations=generations, rerank=False, texts=no_texts
        )
        assert [r.chunk_id for r in via_qdrant.items[:10]] == [
            r.chunk_id for r in via_faiss.items[:10]
        ]
