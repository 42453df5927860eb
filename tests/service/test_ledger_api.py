"""Ledger routes over HTTP: receipts and their key, reversals, period closes, payouts, bad input."""

from __future__ import annotations

import httpx
import pytest

from ledger.receipts import verify_receipt
from service.runtime import Runtime
from tests.service.conftest import Keys
from tests.service.test_errors import assert_problem
from tests.service.test_search_api import search


async def test_search_receipt_verifies_against_the_published_key(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    result = await search(client, keys.agent, query="sepsis fluid resuscitation", top_k=4)
    jwks = (await client.get("/v1/keys/receipts")).json()  # no key needed: it is public
    claims = verify_receipt(result.receipt, jwks)
    assert claims.query_id == result.query_id and claims.customer_id == keys.agent_customer
    assert claims.cost_micros == result.cost_micros == sum(h.price_micros for h in claims.hits)
    assert [(h.rank, h.chunk_id, h.price_micros) for h in claims.hits] == [
        (n, r.chunk_id, r.price_micros) for n, r in enumerate(result.results, 1)
    ]
    assert all(h.owner_micros + h.platform_micros == h.price_micros for h in claims.hits)

    stored = await client.get(f"/v1/receipts/{result.query_id}", headers=keys.auth(keys.agent))
    assert stored.status_code == 200, stored.text
    assert stored.json()["jws"] == result.receipt
    assert stored.json()["key_id"] == jwks["keys"][0]["kid"]


async def test_receipts_are_private_to_the_customer_and_the_owners_paid(
    client: httpx.AsyncClient, keys: Keys, demo_runtime: Runtime
) -> None:
    # One result: one owner is paid, so the demo's other owners are strangers to this receipt.
    result = await search(client, keys.agent, query="duty of care in negligence", top_k=1)
    url = f"/v1/receipts/{result.query_id}"
    assert (await client.get(url, headers=keys.auth(keys.admin))).status_code == 200
    assert_problem(await client.get(url, headers=keys.auth(keys.other_agent)), 404, "no receipt")
    paid = {r.citation.owner_id for r in result.results}
    _, owner_key = await demo_runtime.keys.create_key(
        customer="receipt-owner", role="owner", owner_id=sorted(paid)[0]
    )
    assert (await client.get(url, headers=keys.auth(owner_key))).status_code == 200
    others = {o.id for o in await demo_runtime.catalog.list_owners()} - paid
    _, stranger = await demo_runtime.keys.create_key(
        customer="receipt-stranger", role="owner", owner_id=sorted(others)[0]
    )
    assert_problem(await client.get(url, headers=keys.auth(stranger)), 404)
    assert_problem(await client.get("/v1/receipts/nope", headers=keys.auth(keys.admin)), 404)


async def test_admin_reverses_a_query_once(client: httpx.AsyncClient, keys: Keys) -> None:
    result = await search(client, keys.agent, query="copper supply shock", top_k=2)
    body = {"query_id": result.query_id, "reason": "bad_result"}
    assert_problem(
        await client.post("/v1/admin/reversals", json=body, headers=keys.auth(keys.agent)), 403
    )
    first = await client.post("/v1/admin/reversals", json=body, headers=keys.auth(keys.admin))
    assert first.status_code == 201, first.text
    assert first.json()["refunded_micros"] == result.cost_micros
    assert [h["rank"] for h in first.json()["hits"]] == [1, 2]
    again = await client.post(
        "/v1/admin/reversals", json=body | {"reason": "goodwill"}, headers=keys.auth(keys.admin)
    )
    # Already reversed: the same reversal comes back; nothing new is booked.
    assert [h["reversal_seq"] for h in again.json()["hits"]] == [
        h["reversal_seq"] for h in first.json()["hits"]
    ]
    assert {h["reason"] for h in again.json()["hits"]} == {"bad_result"}


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"query_id": "x", "reason": "because"}, 400, "reason"),
        ({"query_id": "x"}, 400, "reason"),
        ({"query_id": "x", "reason": "other", "extra": 1}, 400, "extra"),
        ({"query_id": "no-such-query", "reason": "other"}, 404, "no-such-query"),
    ],
)
async def test_bad_reversals_are_4xx(
    client: httpx.AsyncClient, keys: Keys, body: dict[str, object], status: int, needle: str
) -> None:
    response = await client.post("/v1/admin/reversals", json=body, headers=keys.auth(keys.admin))
    assert_problem(response, status, needle)


async def test_period_close_route(client: httpx.AsyncClient, keys: Keys) -> None:
    url = "/v1/admin/periods/{}/close"
    assert_problem(await client.post(url.format("2001-01"), headers=keys.auth(keys.owner)), 403)
    assert_problem(await client.post(url.format("2001-13"), headers=keys.auth(keys.admin)), 400)
    assert_problem(
        await client.post(url.format("2999-01"), headers=keys.auth(keys.admin)), 400, "not started"
    )
    # An empty month long ago (no other test closes a period): closing it moves nothing else.
    first = await client.post(url.format("2001-01"), headers=keys.auth(keys.admin))
    assert first.status_code == 200 and first.json() == {"period": "2001-01", "closed_now": True}
    again = await client.post(url.format("2001-01"), headers=keys.auth(keys.admin))
    assert again.json() == {"period": "2001-01", "closed_now": False}


async def test_payouts_route_isolates_owners(client: httpx.AsyncClient, keys: Keys) -> None:
    own = await client.get(f"/v1/owners/{keys.owner_id}/payouts", headers=keys.auth(keys.owner))
    assert own.status_code == 200 and own.json() == []
    assert_problem(
        await client.get("/v1/owners/someone-else/payouts", headers=keys.auth(keys.owner)), 403
    )
    assert_problem(
        await client.get("/v1/owners/nobody/payouts", headers=keys.auth(keys.admin)), 404
    )
    assert_problem(
        await client.get(
            f"/v1/owners/{keys.owner_id}/payouts?period=2026-13", headers=keys.auth(keys.admin)
        ),
        400,
    )


@pytest.mark.parametrize(
    ("licence_change", "needle"),
    [
        ({"price_per_hit_micros": -5}, "price_per_hit_micros"),
        ({"price_per_hit_micros": "4k"}, "price_per_hit_micros"),
        ({"price_per_hit_micros": 1.5}, "price_per_hit_micros"),
        ({"currency": "usd"}, "currency"),
        ({"currency": "XXX"}, "currency"),
        ({"owner_share_bps": 10_001}, "owner_share_bps"),
    ],
)
async def test_malformed_money_is_400(
    client: httpx.AsyncClient, keys: Keys, licence_change: dict[str, object], needle: str
) -> None:
    licence = {
        "id": "bad-money",
        "name": "Bad money",
        "currency": "USD",
        "price_per_hit_micros": 1_000,
        "owner_share_bps": 5_000,
        "snippet_cap_chars": 100,
        "attribution": "x",
    } | licence_change
    body = {"id": "bad-money", "owner_id": keys.owner_id, "name": "x", "licence": licence}
    response = await client.post("/v1/datasets", json=body, headers=keys.auth(keys.admin))
    assert_problem(response, 400, needle)


async def test_prepaid_customer_gets_402_then_searches_after_a_topup(
    client: httpx.AsyncClient, keys: Keys, demo_runtime: Runtime
) -> None:
    principal, key = await demo_runtime.keys.create_key(customer="prepaid-agent", role="agent")
    admin = keys.auth(keys.admin)
    url = f"/v1/admin/customers/{principal.customer_id}"
    limit = await client.put(f"{url}/credit-limit", json={"credit_limit_micros": 0}, headers=admin)
    assert limit.status_code == 200 and limit.json()["available_micros"] == 0
    before = await demo_runtime.hits.count_hits()
    refused = await client.post(
        "/v1/search", json={"query": "sepsis", "top_k": 3}, headers=keys.auth(key)
    )
    problem = assert_problem(refused, 402, "top up")
    assert problem["required_micros"] > 0 and problem["balance_micros"] == 0
    assert await demo_runtime.hits.count_hits() == before

    topup = {"amount_micros": 1_000_000, "reference": f"pi_{principal.customer_id}"}
    assert_problem(await client.post(f"{url}/topups", json=topup, headers=keys.auth(key)), 403)
    assert_problem(
        await client.post(f"{url}/topups", json=topup | {"amount_micros": 0}, headers=admin), 400
    )
    made = await client.post(f"{url}/topups", json=topup, headers=admin)
    assert made.status_code == 201 and made.json()["balance"]["balance_micros"] == 1_000_000
    result = await search(client, key, query="sepsis", top_k=3)
    mine = (await client.get("/v1/balance", headers=keys.auth(key))).json()
    assert mine["balance_micros"] == 1_000_000 - result.cost_micros
    assert mine["available_micros"] == mine["balance_micros"]
