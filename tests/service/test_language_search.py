"""The `languages` filter and the reported query language through the real HTTP app.

The dataset here holds news in three languages and is priced in GBP, searched only by a GBP
customer, so it never shows up in the other (USD) tests' searches of the shared demo runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import pytest_asyncio

from contracts import Licence, Owner
from service.runtime import Runtime
from tests.service.test_errors import assert_problem

DATASET = "polyglot-news"
OWNER = "polyglot-press"
PRICE = 2_000
# Four documents per language (none rare enough to be relabelled as another's), and one whose
# language cannot be detected.
DOCUMENTS = {
    "en-harbour": "The harbour authority opened a new container terminal to ease congestion.",
    "en-rail": "Rail passengers faced delays after a signal failure near the central station.",
    "en-budget": "The city council approved a budget that doubles spending on cycle lanes.",
    "en-flood": "Heavy rain flooded several streets and closed the riverside road overnight.",
    "de-hafen": "Die Hafenbehörde eröffnete ein neues Containerterminal gegen die Staus.",
    "de-bahn": "Bahnreisende mussten nach einer Signalstörung am Hauptbahnhof lange warten.",
    "de-haushalt": "Der Stadtrat beschloss einen Haushalt, der die Ausgaben für Radwege verdoppelt.",
    "de-hochwasser": "Starkregen überflutete mehrere Straßen und sperrte die Uferstraße über Nacht.",
    "fr-port": "L'autorité portuaire a ouvert un nouveau terminal à conteneurs contre les bouchons.",
    "fr-train": "Les voyageurs ont subi des retards après une panne de signalisation en gare.",
    "fr-budget": "Le conseil municipal a voté un budget qui double les dépenses pour les pistes cyclables.",
    "fr-crue": "De fortes pluies ont inondé plusieurs rues et fermé la route des quais pendant la nuit.",
    "und-table": "2026-03 · 4711-B · 12345 · 67890",
}
LICENCE = Licence(
    id="polyglot-news-2026",
    name="Polyglot news",
    currency="GBP",
    price_per_hit_micros=PRICE,
    owner_share_bps=6_000,
    snippet_cap_chars=500,
    attribution="© Polyglot Press",
)


@dataclass(frozen=True)
class Reader:
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest_asyncio.fixture(scope="module")
async def reader(demo_runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> Reader:
    await demo_runtime.catalog.add_owner(Owner(id=OWNER, name="Polyglot Press", currency="GBP"))
    await demo_runtime.catalog.add_dataset(
        dataset_id=DATASET, owner_id=OWNER, name="Polyglot news", description="", licence=LICENCE
    )
    source = tmp_path_factory.mktemp("polyglot") / "news.jsonl"
    source.write_bytes(
        b"".join(msgspec.json.encode({"id": i, "text": t}) + b"\n" for i, t in DOCUMENTS.items())
    )
    report = await demo_runtime.ingest(Path(source), DATASET)
    assert not report.errors and report.added == len(DOCUMENTS)
    _, key = await demo_runtime.keys.create_key(
        customer="polyglot-reader", role="agent", currency="GBP"
    )
    return Reader(key)


async def search(client: httpx.AsyncClient, reader: Reader, **body: Any) -> tuple[Any, int]:
    """The search response and what it took from the customer's balance."""
    before = (await client.get("/v1/balance", headers=reader.headers)).json()["balance_micros"]
    response = await client.post("/v1/search", json={"top_k": 10, **body}, headers=reader.headers)
    assert response.status_code == 200, response.text
    after = (await client.get("/v1/balance", headers=reader.headers)).json()["balance_micros"]
    return response.json(), before - after


def documents(body: Any) -> list[str]:
    return [r["citation"]["document_id"] for r in body["results"]]


async def test_german_only_returns_and_charges_only_german_chunks(
    client: httpx.AsyncClient, reader: Reader
) -> None:
    query = "harbour Hafen port rail Bahn train budget Haushalt"
    everything, _ = await search(client, reader, query=query)
    assert {d.split("-")[0] for d in documents(everything)} >= {"en", "de", "fr"}

    german, cost = await search(client, reader, query=query, languages=["de"])
    found = documents(german)
    assert found and all(d.startswith("de-") for d in found)
    assert german["cost_micros"] == cost == PRICE * len(found)
    receipt = await client.get(f"/v1/receipts/{german['query_id']}", headers=reader.headers)
    charged = [hit["chunk_id"] for hit in receipt.json()["claims"]["hits"]]
    assert charged == [r["chunk_id"] for r in german["results"]]


async def test_several_languages_and_und_can_be_asked_for(
    client: httpx.AsyncClient, reader: Reader
) -> None:
    body, _ = await search(client, reader, query="budget Haushalt", languages=["fr", "de"])
    assert {d.split("-")[0] for d in documents(body)} == {"fr", "de"}
    body, _ = await search(client, reader, query="4711-B 12345", languages=["und"])
    assert documents(body) == ["und-table"]


async def test_a_language_nobody_holds_returns_nothing_and_charges_nothing(
    client: httpx.AsyncClient, reader: Reader
) -> None:
    body, cost = await search(client, reader, query="harbour", languages=["th"])
    assert body["results"] == [] and body["cost_micros"] == cost == 0


async def test_the_query_language_is_reported(client: httpx.AsyncClient, reader: Reader) -> None:
    body, _ = await search(client, reader, query="Wie lange mussten die Bahnreisende warten?")
    assert body["query_language"] == "de"
    body, _ = await search(client, reader, query="4711-B")
    assert body["query_language"] == "und"


@pytest.mark.parametrize(
    ("languages", "needles"),
    [
        (["xx"], ("unknown language code", "'xx'", "ISO 639-1")),
        (["de", "klingon"], ("languages",)),
        (["DE"], ("languages",)),
        ([], ("languages",)),
        ("de", ("languages",)),
    ],
)
async def test_bad_language_codes_are_400_problems(
    client: httpx.AsyncClient, reader: Reader, languages: Any, needles: tuple[str, ...]
) -> None:
    response = await client.post(
        "/v1/search", json={"query": "harbour", "languages": languages}, headers=reader.headers
    )
    assert_problem(response, 400, *needles)
