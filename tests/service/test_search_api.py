"""POST /v1/search end to end through the ASGI app: ranking, citations, caps, money, replay."""

from __future__ import annotations

import tomllib
from functools import cache
from typing import Any

import httpx
import msgspec
import pytest

from contracts import Document, SearchResponse
from ingest.readers import Record, read_source
from service.demo import DEMO_DIR, read_licence
from service.runtime import Runtime
from tests.service.conftest import Keys

SEARCH = "/v1/search"


@cache
def demo_documents() -> dict[tuple[str, str], Document]:
    catalog = tomllib.loads((DEMO_DIR / "catalog.toml").read_text())
    found = {}
    for dataset in catalog["datasets"]:
        for item in read_source(DEMO_DIR / dataset["source"]):
            assert isinstance(item, Record)
            found[(dataset["id"], item.document.id)] = item.document
    return found


@cache
def demo_licences() -> dict[str, Any]:
    catalog = tomllib.loads((DEMO_DIR / "catalog.toml").read_text())
    return {d["id"]: read_licence(DEMO_DIR / d["licence"]) for d in catalog["datasets"]}


async def search(client: httpx.AsyncClient, key: str, **body: Any) -> SearchResponse:
    response = await client.post(SEARCH, json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return msgspec.json.decode(response.content, type=SearchResponse)


async def test_results_are_ranked_cited_capped_and_priced(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    result = await search(
        client, keys.agent, query="antibiotics for community-acquired pneumonia", top_k=5
    )
    assert len(result.results) == 5
    assert result.reranked is False
    scores = [r.score for r in result.results]
    assert scores == sorted(scores, reverse=True)
    documents = demo_documents()
    licences = demo_licences()
    for item in result.results:
        citation = item.citation
        licence = licences[citation.dataset_id]
        source = documents[(citation.dataset_id, citation.document_id)]
        # The citation points at exactly the delivered text in the original document.
        assert source.text[citation.char_start : citation.char_end] == item.text
        assert 0 < len(item.text) <= licence.snippet_cap_chars
        assert item.price_micros == licence.price_per_hit_micros
        assert citation.licence_id == licence.id
        assert citation.attribution == licence.attribution
        assert citation.title == source.title and citation.url == source.url
        assert citation.owner_name
    assert result.cost_micros == sum(r.price_micros for r in result.results)
    assert result.currency == "USD"
    assert result.timings_ms.total >= result.timings_ms.embed > 0


# (query, dataset, document) triples whose answer is unambiguous in the demo catalog.
EXPECTED = [
    (
        "which antibiotic for community-acquired pneumonia by CURB-65 severity",
        "clinical-guidelines",
        "cap-antibiotics-adults",
    ),
    (
        "blood thinner to prevent stroke in someone with an irregular heartbeat",
        "clinical-guidelines",
        "af-anticoagulation",
    ),
    (
        "intramuscular adrenaline dose for anaphylaxis",
        "clinical-guidelines",
        "anaphylaxis-adrenaline",
    ),
    (
        "neighbour gained ownership of my land by gardening on it for twenty years",
        "case-law-summaries",
        "adverse-possession-marlow-v-stroud",
    ),
    (
        "is a worldwide three-year non-compete clause enforceable",
        "case-law-summaries",
        "non-compete-vantor-v-ellison-dynamics",
    ),
    ("copper price record after mine flooding", "market-notes", "copper-supply-shock-cerro-alto"),
    (
        "stablecoin loses its dollar peg over reserve quality",
        "market-notes",
        "solace-usd-stablecoin-depeg",
    ),
]


@pytest.mark.parametrize(("query", "dataset_id", "document_id"), EXPECTED)
async def test_the_obvious_answer_comes_first(
    client: httpx.AsyncClient,
    keys: Keys,
    query: str,
    dataset_id: str,
    document_id: str,
) -> None:
    result = await search(client, keys.agent, query=query, top_k=3)
    top = result.results[0].citation
    assert (top.dataset_id, top.document_id) == (dataset_id, document_id)


async def test_dataset_filter_restricts_results(client: httpx.AsyncClient, keys: Keys) -> None:
    result = await search(
        client, keys.agent, query="pneumonia antibiotics", datasets=["market-notes"], top_k=10
    )
    assert result.results and {r.citation.dataset_id for r in result.results} == {"market-notes"}


async def test_every_delivered_result_is_one_hit_and_the_money_adds_up(
    client: httpx.AsyncClient,
    keys: Keys,
    demo_runtime: Runtime,
) -> None:
    before = await demo_runtime.hits.count_hits()
    result = await search(client, keys.agent, query="sepsis fluid resuscitation", top_k=7)
    hits = await demo_runtime.hits.hits_for_query(result.query_id)
    assert (
        await demo_runtime.hits.count_hits() == before + len(result.results) == before + len(hits)
    )
    assert [h.rank for h in hits] == list(range(1, len(result.results) + 1))
    assert [h.chunk_id for h in hits] == [r.chunk_id for r in result.results]
    for hit, item in zip(hits, result.results, strict=True):
        licence = demo_licences()[hit.dataset_id]
        assert hit.customer_id == keys.agent_customer
        assert hit.price_micros == item.price_micros
        assert hit.owner_micros + hit.platform_micros == hit.price_micros
        # Owner share rounded half up in the owner's favour, to the micro.
        exact = hit.price_micros * licence.owner_share_bps
        assert hit.owner_micros == (2 * exact + 10_000) // 20_000
    assert sum(h.price_micros for h in hits) == result.cost_micros


async def test_budget_cap_limits_spend_and_402s_when_it_buys_nothing(
    client: httpx.AsyncClient,
    keys: Keys,
    demo_runtime: Runtime,
) -> None:
    prices = sorted({licence.price_per_hit_micros for licence in demo_licences().values()})
    budget = prices[-1] + prices[0]
    capped = await search(
        client, keys.agent, query="interest rates and bond yields", top_k=10, max_cost_micros=budget
    )
    assert 0 < capped.cost_micros <= budget
    assert len(capped.results) < 10
    before = await demo_runtime.hits.count_hits()
    broke = await client.post(
        SEARCH,
        json={"query": "interest rates", "top_k": 10, "max_cost_micros": prices[0] - 1},
        headers=keys.auth(keys.agent),
    )
    assert broke.status_code == 402
    assert broke.headers["content-type"].startswith("application/problem+json")
    problem = broke.json()
    assert problem["required_micros"] == prices[0]
    assert (
        problem["max_cost_micros"] == prices[0] - 1 and "nothing was charged" in problem["detail"]
    )
    assert await demo_runtime.hits.count_hits() == before


async def test_same_idempotency_key_replays_the_identical_response_without_charging(
    client: httpx.AsyncClient,
    keys: Keys,
    demo_runtime: Runtime,
) -> None:
    headers = {**keys.auth(keys.agent), "Idempotency-Key": "retry-test-1"}
    first = await client.post(
        SEARCH, json={"query": "non-compete clause enforceability", "top_k": 4}, headers=headers
    )
    assert first.status_code == 200
    count = await demo_runtime.hits.count_hits()
    # Same body, different key order and spacing: still the same request.
    again = await client.post(
        SEARCH,
        content='{"top_k":4,   "query":"non-compete clause enforceability"}',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert again.status_code == 200
    assert again.content == first.content
    assert await demo_runtime.hits.count_hits() == count

    conflict = await client.post(
        SEARCH, json={"query": "something else", "top_k": 4}, headers=headers
    )
    assert conflict.status_code == 409
    assert conflict.headers["content-type"].startswith("application/problem+json")
    assert "Idempotency-Key" in conflict.json()["detail"]
    assert await demo_runtime.hits.count_hits() == count

    # Keys are per customer: another customer's identical key is a new, separately charged search.
    other = await client.post(
        SEARCH,
        json={"query": "non-compete clause enforceability", "top_k": 4},
        headers={"Authorization": f"Bearer {keys.other_agent}", "Idempotency-Key": "retry-test-1"},
    )
    assert other.status_code == 200 and other.json()["query_id"] != first.json()["query_id"]


async def test_chunk_text_is_shown_only_once_paid_for(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    result = await search(client, keys.agent, query="atrial fibrillation anticoagulation", top_k=1)
    chunk_id = result.results[0].chunk_id
    mine = (await client.get(f"/v1/chunks/{chunk_id}", headers=keys.auth(keys.agent))).json()
    assert mine["purchased"] is True and mine["text"] == result.results[0].text
    assert mine["citation"] == msgspec.to_builtins(result.results[0].citation)
    theirs = (
        await client.get(f"/v1/chunks/{chunk_id}", headers=keys.auth(keys.other_agent))
    ).json()
    if not theirs["purchased"]:
        assert theirs["text"] is None and theirs["price_micros"] == result.results[0].price_micros


async def test_catalog_lists_datasets_with_terms(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.get("/v1/datasets", headers=keys.auth(keys.agent))
    assert response.status_code == 200
    datasets = {d["id"]: d for d in response.json()}
    assert set(demo_licences()) <= set(datasets)  # other modules may add their own
    for dataset_id, licence in demo_licences().items():
        assert datasets[dataset_id]["licence"] == msgspec.to_builtins(licence.canonical())
        assert datasets[dataset_id]["document_count"] >= 50


async def test_health_readiness_and_openapi(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = (await client.get("/readyz")).json()
    assert ready["status"] == "ready"
    assert ready["checks"]["reranker"]["loaded"] is False
    assert "FAIRSHARE_RERANKER_MODEL" in ready["checks"]["reranker"]["detail"]
    schema = (await client.get("/schema/openapi.json")).json()
    assert "/v1/search" in schema["paths"]
    assert "SearchRequest" in str(schema["components"]["schemas"])


async def test_scoped_key_never_gets_other_datasets(
    client: httpx.AsyncClient, keys: Keys, demo_runtime: Runtime
) -> None:
    datasets = sorted(d.id for d in await demo_runtime.catalog.list_datasets())
    created = await client.post(
        "/v1/keys",
        json={"customer": "scoped-agent", "role": "agent", "datasets": [datasets[0]]},
        headers=keys.auth(keys.admin),
    )
    assert created.status_code == 201 and created.json()["datasets"] == [datasets[0]]
    scoped = created.json()["api_key"]
    # A query aimed squarely at other datasets still only returns the allowed one.
    for query in ("duty of care in negligence", "semiconductor earnings", "sepsis antibiotics"):
        result = await search(client, scoped, query=query, top_k=10)
        assert result.results and {r.citation.dataset_id for r in result.results} == {datasets[0]}
    before = await demo_runtime.hits.count_hits()
    refused = await client.post(
        SEARCH,
        json={"query": "anything", "datasets": [datasets[0], datasets[1]]},
        headers={"Authorization": f"Bearer {scoped}"},
    )
    assert refused.status_code == 403 and datasets[1] in refused.json()["detail"]
    assert await demo_runtime.hits.count_hits() == before
    unknown = await client.post(
        "/v1/keys",
        json={"customer": "scoped-agent", "role": "agent", "datasets": ["no-such-dataset"]},
        headers=keys.auth(keys.admin),
    )
    assert unknown.status_code == 404 and "no-such-dataset" in unknown.json()["detail"]
