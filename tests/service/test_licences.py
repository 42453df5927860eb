"""Licence terms at query time, owners managing their own licences, and RSL over HTTP.

The dataset here is priced in EUR and searched only by EUR customers, so changing its licence
never changes what the other (USD) tests of the session see.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import pytest_asyncio

from contracts import Licence, Owner
from ledger.rsl import licence_from_rsl
from service.runtime import Runtime
from tests.service.conftest import Keys

DATASET = "glacier-notes"
OWNER = "alpine-press"
DOCUMENTS = [
    {"id": "g1", "title": "Glacier retreat", "text": "Alpine glaciers lost ice mass every year."},
    {"id": "g2", "title": "Moraine dating", "text": "Moraines date glacier advances and retreat."},
    {"id": "g3", "title": "Firn density", "text": "Firn compacts into glacier ice over decades."},
]
QUERY = {"query": "glacier retreat", "top_k": 3, "datasets": [DATASET]}


@dataclass(frozen=True)
class Lab:
    agent: str  # an EUR customer's key
    agent_customer: str
    owner: str  # the dataset owner's key
    admin: str


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def terms(**changes: Any) -> dict[str, Any]:
    """A new licence (fresh id) for the dataset, as JSON."""
    base = Licence(
        id=f"glacier-{uuid.uuid4().hex[:10]}",
        name="Glacier notes",
        currency="EUR",
        price_per_hit_micros=1_500,
        owner_share_bps=7_000,
        snippet_cap_chars=400,
        attribution="© Alpine Press",
    )
    return msgspec.to_builtins(msgspec.structs.replace(base, **changes))


@pytest_asyncio.fixture(scope="module")
async def lab(demo_runtime: Runtime, keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Lab:
    await demo_runtime.catalog.add_owner(Owner(id=OWNER, name="Alpine Press", currency="EUR"))
    await demo_runtime.catalog.add_dataset(
        dataset_id=DATASET,
        owner_id=OWNER,
        name="Glacier notes",
        description="",
        licence=msgspec.convert(terms(), Licence),
    )
    source = tmp_path_factory.mktemp("glacier") / "notes.jsonl"
    source.write_text("\n".join(msgspec.json.encode(d).decode() for d in DOCUMENTS) + "\n")
    report = await demo_runtime.ingest(Path(source), DATASET)
    assert not report.errors
    agent, agent_key = await demo_runtime.keys.create_key(
        customer="glacier-reader", role="agent", currency="EUR"
    )
    _, owner_key = await demo_runtime.keys.create_key(
        customer="alpine-press-staff", role="owner", owner_id=OWNER, currency="EUR"
    )
    return Lab(agent_key, agent.customer_id, owner_key, keys.admin)


async def put_terms(client: httpx.AsyncClient, lab: Lab, **changes: Any) -> dict[str, Any]:
    licence = terms(**changes)
    response = await client.put(
        f"/v1/datasets/{DATASET}/licence", json=licence, headers=auth(lab.owner)
    )
    assert response.status_code == 200, response.text
    return licence


async def search(client: httpx.AsyncClient, lab: Lab, **extra: Any) -> tuple[dict[str, Any], int]:
    """The search response and what it cost the customer's balance."""
    before = (await client.get("/v1/balance", headers=auth(lab.agent))).json()["balance_micros"]
    response = await client.post("/v1/search", json=QUERY | extra, headers=auth(lab.agent))
    assert response.status_code == 200, response.text
    after = (await client.get("/v1/balance", headers=auth(lab.agent))).json()["balance_micros"]
    return response.json(), before - after


async def set_territory(client: httpx.AsyncClient, lab: Lab, code: str | None) -> None:
    response = await client.put(
        f"/v1/admin/customers/{lab.agent_customer}/territory",
        json={"territory": code},
        headers=auth(lab.admin),
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"territory": code}


async def test_owner_changes_own_licence_and_search_uses_it(
    client: httpx.AsyncClient, lab: Lab
) -> None:
    licence = await put_terms(client, lab, price_per_hit_micros=2_500)
    current = await client.get(f"/v1/datasets/{DATASET}/licence", headers=auth(lab.agent))
    assert current.json()["id"] == licence["id"]
    body, cost = await search(client, lab)
    assert body["results"] and cost == 2_500 * len(body["results"])
    assert {r["citation"]["licence_id"] for r in body["results"]} == {licence["id"]}


async def test_only_the_owner_or_an_admin_may_change_a_licence(
    client: httpx.AsyncClient, lab: Lab, keys: Keys
) -> None:
    before = (await client.get(f"/v1/datasets/{DATASET}/licence", headers=auth(lab.agent))).json()
    for key in (keys.owner, lab.agent, keys.agent):  # another owner; agents
        response = await client.put(
            f"/v1/datasets/{DATASET}/licence", json=terms(), headers=auth(key)
        )
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
    after = (await client.get(f"/v1/datasets/{DATASET}/licence", headers=auth(lab.agent))).json()
    assert after == before
    admin = await client.put(
        f"/v1/datasets/{DATASET}/licence", json=terms(), headers=auth(lab.admin)
    )
    assert admin.status_code == 200


async def test_reusing_a_licence_id_with_other_terms_is_a_conflict(
    client: httpx.AsyncClient, lab: Lab
) -> None:
    licence = await put_terms(client, lab)
    again = await client.put(
        f"/v1/datasets/{DATASET}/licence", json=licence, headers=auth(lab.owner)
    )
    assert again.status_code == 200  # the same terms: nothing changes
    changed = licence | {"price_per_hit_micros": 1}
    conflict = await client.put(
        f"/v1/datasets/{DATASET}/licence", json=changed, headers=auth(lab.owner)
    )
    assert conflict.status_code == 409 and "immutable" in conflict.json()["detail"]


@pytest.mark.parametrize(
    ("permits", "prohibits", "use", "served"),
    [
        (["rag"], [], "rag", True),
        (["rag"], [], None, True),  # no stated use is taken as rag
        (["rag"], [], "train", False),
        (["display"], [], None, False),
        (["rag", "train"], ["train"], "train", False),  # prohibition wins
        (["rag", "display", "summarize", "train"], [], "train", True),
    ],
)
async def test_intended_use_gets_only_what_the_licence_permits(
    client: httpx.AsyncClient,
    lab: Lab,
    permits: list[str],
    prohibits: list[str],
    use: str | None,
    served: bool,
) -> None:
    await put_terms(client, lab, permits=permits, prohibits=prohibits)
    body, cost = await search(client, lab, **({"intended_use": use} if use else {}))
    assert body["intended_use"] == (use or "rag")
    if served:
        assert body["results"] and cost > 0 and body["withheld"] == []
    else:
        assert body["results"] == [] and cost == 0 and body["cost_micros"] == 0
        [withheld] = body["withheld"]
        assert withheld["dataset_id"] == DATASET and f"'{use or 'rag'}'" in withheld["reason"]


async def test_unnamed_datasets_are_filtered_silently(client: httpx.AsyncClient, lab: Lab) -> None:
    await put_terms(client, lab, permits=["rag"])
    response = await client.post(
        "/v1/search",
        json={"query": "glacier retreat", "intended_use": "train"},
        headers=auth(lab.agent),
    )
    assert response.json()["results"] == [] and response.json()["withheld"] == []


@pytest.mark.parametrize(
    ("start", "end", "served"),
    [
        (None, timedelta(days=-1), False),  # expired
        (timedelta(days=1), None, False),  # not yet in force
        (timedelta(days=-1), timedelta(days=1), True),
    ],
)
async def test_a_licence_outside_its_window_yields_nothing_and_charges_nothing(
    client: httpx.AsyncClient,
    lab: Lab,
    start: timedelta | None,
    end: timedelta | None,
    served: bool,
) -> None:
    now = datetime.now(UTC)
    await put_terms(
        client,
        lab,
        valid_from=None if start is None else now + start,
        valid_until=None if end is None else now + end,
    )
    body, cost = await search(client, lab)
    assert bool(body["results"]) is served and (cost > 0) is served
    if not served:
        assert "not in force" in body["withheld"][0]["reason"]


async def test_territories_are_checked_against_the_customers(
    client: httpx.AsyncClient, lab: Lab
) -> None:
    await put_terms(client, lab, territories=["SG", "MY"])
    try:
        await set_territory(client, lab, None)
        body, cost = await search(client, lab)
        assert body["results"] == [] and cost == 0  # unknown territory: not provably allowed
        assert "unknown territory" in body["withheld"][0]["reason"]
        await set_territory(client, lab, "DE")
        body, cost = await search(client, lab)
        assert body["results"] == [] and cost == 0
        await set_territory(client, lab, "SG")
        body, cost = await search(client, lab)
        assert body["results"] and cost > 0
        await put_terms(client, lab, excluded_territories=["SG"])  # everywhere but SG
        body, cost = await search(client, lab)
        assert body["results"] == [] and cost == 0
        await set_territory(client, lab, "DE")
        body, cost = await search(client, lab)
        assert body["results"] and cost > 0
    finally:
        await set_territory(client, lab, None)


async def test_customer_territory_must_be_a_country_code(
    client: httpx.AsyncClient, lab: Lab
) -> None:
    response = await client.put(
        f"/v1/admin/customers/{lab.agent_customer}/territory",
        json={"territory": "Singapore"},
        headers=auth(lab.admin),
    )
    assert response.status_code == 400


PUBLISHER_RSL = b"""<?xml version="1.0" encoding="UTF-8"?>
<rsl xmlns="https://rslstandard.org/rsl">
  <content url="/glacier/*">
    <copyright>Alpine Press</copyright>
    <license>
      <permits type="usage">ai-input</permits>
      <prohibits type="usage">ai-train search</prohibits>
      <payment type="use"><amount currency="EUR">0.0042</amount></payment>
    </license>
  </content>
</rsl>
"""


async def test_owner_imports_and_exports_rsl(client: httpx.AsyncClient, lab: Lab) -> None:
    licence_id = f"rsl-{uuid.uuid4().hex[:10]}"
    response = await client.put(
        f"/v1/datasets/{DATASET}/licence/rsl",
        params={"licence_id": licence_id, "owner_share_bps": 6000, "snippet_cap_chars": 300},
        content=PUBLISHER_RSL,
        headers=auth(lab.owner) | {"Content-Type": "application/rsl+xml"},
    )
    assert response.status_code == 200, response.text
    licence = response.json()["licence"]
    assert licence["id"] == licence_id and licence["price_per_hit_micros"] == 4_200
    assert licence["permits"] == ["rag", "summarize"] and licence["attribution"] == "Alpine Press"

    exported = await client.get(
        f"/v1/datasets/{DATASET}/licence", params={"format": "rsl"}, headers=auth(lab.agent)
    )
    assert exported.headers["content-type"].startswith("application/rsl+xml")
    assert msgspec.to_builtins(licence_from_rsl(exported.content, currency="EUR")) == licence

    body, cost = await search(client, lab, intended_use="summarize")
    assert body["results"] and cost == 4_200 * len(body["results"])
    body, cost = await search(client, lab, intended_use="display")
    assert body["results"] == [] and cost == 0


async def test_rsl_that_does_not_map_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, lab: Lab
) -> None:
    before = (await client.get(f"/v1/datasets/{DATASET}/licence", headers=auth(lab.agent))).json()
    subscription = PUBLISHER_RSL.replace(b'type="use"', b'type="subscription"')
    response = await client.put(
        f"/v1/datasets/{DATASET}/licence/rsl",
        params={"licence_id": "never", "owner_share_bps": 6000, "snippet_cap_chars": 300},
        content=subscription,
        headers=auth(lab.owner),
    )
    assert response.status_code == 400
    assert "subscription" in response.json()["detail"]
    after = (await client.get(f"/v1/datasets/{DATASET}/licence", headers=auth(lab.agent))).json()
    assert after == before
