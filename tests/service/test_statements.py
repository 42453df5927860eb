"""Owner statements over HTTP and the CLI: they show the hits, to the micro."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime

import httpx
import pytest
from pypdf import PdfReader

from ledger.statement_formats import format_units
from service.cli import main
from tests.service.conftest import Keys
from tests.service.test_search_api import search

QUERIES = [
    "antibiotics for community-acquired pneumonia",
    "duty of care in negligence",
    "semiconductor earnings guidance",
    "sepsis fluid resuscitation targets",
    "copper supply shock",
    "fair use of copyrighted material",
]


async def test_statement_delta_equals_what_was_delivered(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    period = datetime.now(UTC).strftime("%Y-%m")
    url = f"/v1/owners/{keys.owner_id}/statement?period={period}"
    before = (await client.get(url, headers=keys.auth(keys.owner))).json()

    delivered: Counter[str] = Counter()
    gross: defaultdict[str, int] = defaultdict(int)
    for query in QUERIES:
        result = await search(client, keys.agent, query=query, top_k=6)
        for item in result.results:
            if item.citation.owner_id == keys.owner_id:
                delivered[item.citation.dataset_id] += 1
                gross[item.citation.dataset_id] += item.price_micros
    assert delivered, "the queries should reach this owner's dataset"

    after = (await client.get(url, headers=keys.auth(keys.owner))).json()
    assert after["owner_id"] == keys.owner_id and after["period"] == period
    assert after["currency"] == "USD"
    assert after["hit_count"] - before["hit_count"] == sum(delivered.values())
    assert after["gross_micros"] - before["gross_micros"] == sum(gross.values())
    assert after["owner_micros"] + after["platform_micros"] == after["gross_micros"]
    lines = {line["dataset_id"]: line for line in after["datasets"]}
    assert sum(line["hit_count"] for line in lines.values()) == after["hit_count"]
    assert sum(line["gross_micros"] for line in lines.values()) == after["gross_micros"]
    assert sum(line["owner_micros"] for line in lines.values()) == after["owner_micros"]
    old_lines = {line["dataset_id"]: line for line in before["datasets"]}
    for dataset_id, count in delivered.items():
        old = old_lines.get(dataset_id, {"hit_count": 0, "gross_micros": 0})
        assert lines[dataset_id]["hit_count"] - old["hit_count"] == count
        assert lines[dataset_id]["gross_micros"] - old["gross_micros"] == gross[dataset_id]


async def test_statement_for_an_empty_month_is_zero(client: httpx.AsyncClient, keys: Keys) -> None:
    body = (
        await client.get(
            f"/v1/owners/{keys.owner_id}/statement?period=2001-01", headers=keys.auth(keys.admin)
        )
    ).json()
    assert (body["hit_count"], body["gross_micros"], body["owner_micros"], body["datasets"]) == (
        0,
        0,
        0,
        [],
    )


async def test_statement_csv_and_html_over_http(client: httpx.AsyncClient, keys: Keys) -> None:
    period = datetime.now(UTC).strftime("%Y-%m")
    base = f"/v1/owners/{keys.owner_id}/statement?period={period}"
    await search(client, keys.agent, query=QUERIES[0], top_k=3)
    as_json = (await client.get(base, headers=keys.auth(keys.owner))).json()
    as_csv = await client.get(base + "&format=csv", headers=keys.auth(keys.owner))
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    summary = {r["key"]: r["value"] for r in rows if r["section"] == "summary"}
    assert int(summary["gross"]) == as_json["gross_micros"] > 0
    assert int(summary["hit_count"]) == as_json["hit_count"]
    datasets = [r for r in rows if r["section"] == "dataset"]
    assert sum(int(r["gross_micros"]) for r in datasets) == as_json["gross_micros"]
    html = await client.get(base + "&format=html", headers=keys.auth(keys.owner))
    assert html.headers["content-type"].startswith("text/html")
    assert "<svg" in html.text and f"{as_json['hit_count']:,}" in html.text
    pdf = await client.get(base + "&format=pdf", headers=keys.auth(keys.owner))
    assert pdf.headers["content-type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert format_units(as_json["gross_micros"], as_json["currency"]) in text
    assert as_json["owner_name"] in text


@pytest.mark.parametrize("fmt", ["json", "csv", "html"])
def test_cli_statement_formats(
    fmt: str, keys: Keys, demo_runtime_settings_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    period = datetime.now(UTC).strftime("%Y-%m")
    assert main(["statements", "--owner", keys.owner_id, "--period", period, "--format", fmt]) == 0
    out = capsys.readouterr().out
    if fmt == "json":
        body = json.loads(out)
        assert body["owner_id"] == keys.owner_id and body["hit_count"] > 0
        assert body["gross_micros"] == sum(d["gross_micros"] for d in body["datasets"])
    elif fmt == "csv":
        assert out.splitlines()[0].startswith("owner_id,period,currency,section")
    else:
        assert out.lstrip().lower().startswith("<!doctype html")


def test_cli_statement_errors_are_clear(
    demo_runtime_settings_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["statements", "--owner", "nobody", "--period", "2026-01"]) == 2
    assert "nobody" in capsys.readouterr().err
    assert main(["statements", "--owner", "nobody", "--period", "2026-13"]) == 2
    assert "period" in capsys.readouterr().err
