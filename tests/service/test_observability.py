"""/metrics in Prometheus text format and one JSON access-log line per request."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.service.conftest import Keys
from tests.service.test_search_api import search


async def metric_samples(
    client: httpx.AsyncClient,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


async def test_metrics_count_requests_hits_revenue_and_stages(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    before = await metric_samples(client)
    result = await search(client, keys.agent, query="copper supply shock", top_k=4)
    after = await metric_samples(client)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    for dataset in {r.citation.dataset_id for r in result.results}:
        mine = [r for r in result.results if r.citation.dataset_id == dataset]
        assert delta("fairshare_hits_total", dataset=dataset) == len(mine)
        assert delta("fairshare_revenue_micros_total", dataset=dataset, currency="USD") == sum(
            r.price_micros for r in mine
        )
    assert (
        delta("fairshare_http_requests_total", method="POST", route="/v1/search", status="200") == 1
    )
    assert delta("fairshare_search_stage_seconds_count", stage="embed") == 1
    assert delta("fairshare_search_stage_seconds_count", stage="total") == 1
    assert delta("fairshare_ledger_batch_queries_count") >= 1


async def test_each_request_logs_one_json_line_with_its_query_id(
    client: httpx.AsyncClient, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="fairshare.access"):
        result = await search(client, keys.agent, query="duty of care", top_k=2)
        await client.get("/healthz")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "fairshare.access"]
    assert [(x["route"], x["status"]) for x in lines] == [("/v1/search", 200), ("/healthz", 200)]
    assert lines[0]["query_id"] == result.query_id and lines[1]["query_id"] is None
    assert lines[0]["ms"] > 0 and lines[0]["method"] == "POST"
