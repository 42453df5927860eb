"""Every route against every role, and no key reads another tenant's data.

`EXPECTED` says, for each route, what each kind of caller gets. It is checked against the app's
own routes, so a new route fails `test_every_route_is_classified` until someone decides here
who may call it. The roles:

- anonymous: no key;
- agent, other_agent: agent keys of two customers; `agent` made the search whose receipt,
  chunk and query id the requests use;
- owner: an owner key for the owner named in the path (and paid by that search);
- other_owner: an owner key for another owner, sending the same requests;
- admin.

Refused calls (401, 403, and 404 where a route hides what is not yours) must leave every
table of the database as it was. Allowed writes are chosen so that they change nothing other
tests rely on: re-adding an existing owner and dataset (idempotent), closing a month that has
not started (refused as 400, after the role check), a top-up and a reversal for this module's
own customer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import msgspec
import pytest
import pytest_asyncio
from litestar.routes import HTTPRoute
from sqlalchemy import func, inspect, select, table

from contracts import Licence
from ledger.rsl import licence_to_rsl
from service.app import create_app
from service.runtime import Runtime
from tests.service.conftest import Keys
from tests.service.test_errors import assert_problem
from tests.service.test_search_api import search

Role = Literal["anonymous", "agent", "other_agent", "owner", "other_owner", "admin"]
ROLES: tuple[Role, ...] = ("anonymous", "agent", "other_agent", "owner", "other_owner", "admin")
Route = tuple[str, str]  # (method, path as the OpenAPI schema writes it)


PUBLIC: dict[Role, int] = dict.fromkeys(ROLES, 200)
ANY_KEY: dict[Role, int] = {**PUBLIC, "anonymous": 401}
REFUSED: dict[Role, int] = {**dict.fromkeys(ROLES, 403), "anonymous": 401}
OWN_OWNER: dict[Role, int] = {**REFUSED, "owner": 200, "admin": 200}


def _only_admin(ok: int) -> dict[Role, int]:
    return {**REFUSED, "admin": ok}


EXPECTED: dict[Route, dict[Role, int]] = {
    ("POST", "/v1/search"): {**ANY_KEY, "owner": 403, "other_owner": 403},
    ("GET", "/v1/datasets"): ANY_KEY,  # the catalog and its prices are public to customers
    ("POST", "/v1/datasets"): _only_admin(201),
    # Any key sees a chunk's citation and price; its text is checked separately below.
    ("GET", "/v1/chunks/{chunk_id}"): ANY_KEY,
    ("GET", "/v1/owners/{owner_id}/statement"): OWN_OWNER,
    ("GET", "/v1/owners/{owner_id}/payouts"): OWN_OWNER,
    ("GET", "/v1/owners/{owner_id}/residency"): OWN_OWNER,
    ("GET", "/v1/keys/receipts"): PUBLIC,  # public keys, so anyone can verify a receipt
    # Another customer's receipt, or one that paid this owner nothing, is hidden as absent.
    ("GET", "/v1/receipts/{query_id}"): {**ANY_KEY, "other_agent": 404, "other_owner": 404},
    ("GET", "/v1/balance"): ANY_KEY,  # always the caller's own customer
    ("POST", "/v1/admin/reversals"): _only_admin(201),
    ("POST", "/v1/admin/periods/{period}/close"): _only_admin(400),  # 400: not started yet
    ("POST", "/v1/admin/customers/{customer_id}/topups"): _only_admin(201),
    ("PUT", "/v1/admin/customers/{customer_id}/credit-limit"): _only_admin(200),
    ("PUT", "/v1/admin/customers/{customer_id}/territory"): _only_admin(200),
    ("GET", "/v1/datasets/{dataset_id}/licence"): ANY_KEY,  # terms are public, like the catalog
    # An owner manages its own datasets' licences; the requests re-send the current terms.
    ("PUT", "/v1/datasets/{dataset_id}/licence"): OWN_OWNER,
    ("PUT", "/v1/datasets/{dataset_id}/licence/rsl"): OWN_OWNER,
    # 404: an unknown dataset, after the role check. A real revoke would empty the shared demo
    # catalog; tests/service/test_revocation.py revokes for real.
    ("POST", "/v1/admin/datasets/{dataset_id}/revoke"): _only_admin(404),
    # Deletion receipts go to the dataset's owner and admins (the dataset here is not revoked).
    ("GET", "/v1/datasets/{dataset_id}/revocations"): OWN_OWNER,
    ("GET", "/v1/owners"): _only_admin(200),
    ("POST", "/v1/owners"): _only_admin(201),
    ("POST", "/v1/keys"): _only_admin(201),
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    # Public by design (README): bind the server to a private interface to keep it in.
    ("GET", "/metrics"): PUBLIC,
    # Stands for every route of Litestar's OpenAPI router under DOCS (see `app_routes`).
    ("GET", "/schema/openapi.json"): PUBLIC,
}
DOCS = "/schema"


def app_routes() -> set[Route]:
    """(method, path) of every route the app serves; the OpenAPI router's as one entry."""
    found: set[Route] = set()
    for route in create_app().routes:  # built, never started: no runtime needed
        assert isinstance(route, HTTPRoute), route
        path = route.path_format
        if path == DOCS or path.startswith(DOCS + "/"):
            found.add(("GET", "/schema/openapi.json"))
            continue
        found.update((method, path) for method in route.methods - {"OPTIONS", "HEAD"})
    return found


def test_every_route_is_classified() -> None:
    routes = app_routes()
    unclassified = sorted(routes - set(EXPECTED))
    assert not unclassified, f"decide who may call these, in EXPECTED: {unclassified}"
    assert not sorted(set(EXPECTED) - routes), "EXPECTED names routes the app no longer has"
    assert all(set(rule) == set(ROLES) for rule in EXPECTED.values())


@dataclass(frozen=True)
class World:
    """Keys of every role, and real ids for the requests to name."""

    keys: dict[Role, str | None]
    owner_id: str  # the `owner` key's owner; `other_owner` acts for another one
    owner: dict[str, Any]
    dataset: dict[str, Any]  # one of `owner_id`'s datasets
    query_id: str  # `agent`'s search of `dataset`: it paid `owner_id` only
    chunk_id: str
    agent_customer: str

    def headers(self, role: Role) -> dict[str, str]:
        key = self.keys[role]
        return {} if key is None else {"Authorization": f"Bearer {key}"}


@pytest_asyncio.fixture(scope="module")
async def world(client: httpx.AsyncClient, keys: Keys, demo_runtime: Runtime) -> World:
    datasets = sorted(await demo_runtime.catalog.list_datasets(), key=lambda d: d.id)
    dataset = datasets[0]
    other_owner = next(d.owner_id for d in datasets if d.owner_id != dataset.owner_id)
    make = demo_runtime.keys.create_key
    agent, agent_key = await make(customer="roles-agent", role="agent")
    _, other_agent_key = await make(customer="roles-other-agent", role="agent")
    _, owner_key = await make(customer="roles-owner", role="owner", owner_id=dataset.owner_id)
    _, other_owner_key = await make(
        customer="roles-other-owner", role="owner", owner_id=other_owner
    )
    result = await search(
        client, agent_key, query="first-line treatment", top_k=1, datasets=[dataset.id]
    )
    assert [r.citation.owner_id for r in result.results] == [dataset.owner_id]
    return World(
        keys={
            "anonymous": None,
            "agent": agent_key,
            "other_agent": other_agent_key,
            "owner": owner_key,
            "other_owner": other_owner_key,
            "admin": keys.admin,
        },
        owner_id=dataset.owner_id,
        owner=msgspec.to_builtins(await demo_runtime.catalog.get_owner(dataset.owner_id)),
        dataset=msgspec.to_builtins(dataset),
        query_id=result.query_id,
        chunk_id=result.results[0].chunk_id,
        agent_customer=agent.customer_id,
    )


def _dataset_again(w: World) -> dict[str, Any]:
    keep = ("id", "owner_id", "name", "licence", "description")
    return {k: w.dataset[k] for k in keep}


# Each route's request: (path, JSON body or None), the same for every role.
REQUESTS: dict[Route, Callable[[World], tuple[str, Any]]] = {
    ("POST", "/v1/search"): lambda w: (
        "/v1/search",
        {"query": "dosing", "top_k": 1, "datasets": [w.dataset["id"]]},
    ),
    ("GET", "/v1/datasets"): lambda w: ("/v1/datasets", None),
    ("POST", "/v1/datasets"): lambda w: ("/v1/datasets", _dataset_again(w)),
    ("GET", "/v1/chunks/{chunk_id}"): lambda w: (f"/v1/chunks/{w.chunk_id}", None),
    ("GET", "/v1/owners/{owner_id}/statement"): lambda w: (
        f"/v1/owners/{w.owner_id}/statement?period={datetime.now(UTC):%Y-%m}",
        None,
    ),
    ("GET", "/v1/owners/{owner_id}/payouts"): lambda w: (f"/v1/owners/{w.owner_id}/payouts", None),
    ("GET", "/v1/owners/{owner_id}/residency"): lambda w: (
        f"/v1/owners/{w.owner_id}/residency",
        None,
    ),
    ("GET", "/v1/keys/receipts"): lambda w: ("/v1/keys/receipts", None),
    ("GET", "/v1/receipts/{query_id}"): lambda w: (f"/v1/receipts/{w.query_id}", None),
    ("GET", "/v1/balance"): lambda w: ("/v1/balance", None),
    ("POST", "/v1/admin/reversals"): lambda w: (
        "/v1/admin/reversals",
        {"query_id": w.query_id, "reason": "goodwill"},
    ),
    ("POST", "/v1/admin/periods/{period}/close"): lambda w: (
        "/v1/admin/periods/2999-01/close",
        None,
    ),
    ("POST", "/v1/admin/customers/{customer_id}/topups"): lambda w: (
        f"/v1/admin/customers/{w.agent_customer}/topups",
        {"amount_micros": 5_000, "reference": "roles-topup-1"},
    ),
    ("PUT", "/v1/admin/customers/{customer_id}/credit-limit"): lambda w: (
        f"/v1/admin/customers/{w.agent_customer}/credit-limit",
        {"credit_limit_micros": None},
    ),
    ("PUT", "/v1/admin/customers/{customer_id}/territory"): lambda w: (
        f"/v1/admin/customers/{w.agent_customer}/territory",
        {"territory": None},
    ),
    ("GET", "/v1/datasets/{dataset_id}/licence"): lambda w: (
        f"/v1/datasets/{w.dataset['id']}/licence",
        None,
    ),
    ("PUT", "/v1/datasets/{dataset_id}/licence"): lambda w: (
        f"/v1/datasets/{w.dataset['id']}/licence",
        w.dataset["licence"],
    ),
    # Bytes are sent as the raw body: the RSL document of the dataset's current licence.
    ("PUT", "/v1/datasets/{dataset_id}/licence/rsl"): lambda w: (
        f"/v1/datasets/{w.dataset['id']}/licence/rsl",
        licence_to_rsl(msgspec.convert(w.dataset["licence"], Licence)),
    ),
    ("POST", "/v1/admin/datasets/{dataset_id}/revoke"): lambda w: (
        "/v1/admin/datasets/no-such-dataset/revoke",
        None,
    ),
    ("GET", "/v1/datasets/{dataset_id}/revocations"): lambda w: (
        f"/v1/datasets/{w.dataset['id']}/revocations",
        None,
    ),
    ("GET", "/v1/owners"): lambda w: ("/v1/owners", None),
    ("POST", "/v1/owners"): lambda w: ("/v1/owners", w.owner),  # the same owner again
    ("POST", "/v1/keys"): lambda w: ("/v1/keys", {"customer": "roles-minted", "role": "agent"}),
    ("GET", "/healthz"): lambda w: ("/healthz", None),
    ("GET", "/readyz"): lambda w: ("/readyz", None),
    ("GET", "/metrics"): lambda w: ("/metrics", None),
    ("GET", "/schema/openapi.json"): lambda w: ("/schema/openapi.json", None),
}


async def row_counts(runtime: Runtime) -> dict[str, int]:
    """Rows in every table: a refused call must not change any of them."""
    async with runtime.engine.connect() as conn:
        names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        return {
            name: (await conn.execute(select(func.count()).select_from(table(name)))).scalar_one()
            for name in names
        }


@pytest.mark.parametrize("route", sorted(EXPECTED), ids=" ".join)
async def test_each_role_gets_what_the_table_says(
    route: Route, client: httpx.AsyncClient, world: World, demo_runtime: Runtime
) -> None:
    method, _ = route
    path, body = REQUESTS[route](world)
    for role, expected in EXPECTED[route].items():
        before = await row_counts(demo_runtime)
        raw = isinstance(body, bytes)
        response = await client.request(
            method,
            path,
            content=body if raw else None,
            json=None if raw else body,
            headers=world.headers(role),
        )
        assert response.status_code == expected, f"{role}: {response.text[:400]}"
        if expected in (401, 403, 404):
            assert_problem(response, expected)
            assert await row_counts(demo_runtime) == before, f"a refused {role} call wrote"


async def test_chunk_text_goes_only_to_its_buyer_its_owner_and_admins(
    client: httpx.AsyncClient, world: World
) -> None:
    seen = {}
    for role in ("agent", "other_agent", "owner", "other_owner", "admin"):
        response = await client.get(f"/v1/chunks/{world.chunk_id}", headers=world.headers(role))
        assert response.status_code == 200, response.text
        seen[role] = response.json()["text"] is not None
    assert seen == {
        "agent": True,
        "other_agent": False,
        "owner": True,
        "other_owner": False,
        "admin": True,
    }


async def test_each_key_reads_only_its_own_tenant(client: httpx.AsyncClient, world: World) -> None:
    balance = await client.get("/v1/balance", headers=world.headers("agent"))
    assert balance.json()["customer_id"] == world.agent_customer
    other = await client.get("/v1/balance", headers=world.headers("other_agent"))
    assert other.json()["customer_id"] != world.agent_customer
    receipt = await client.get(f"/v1/receipts/{world.query_id}", headers=world.headers("owner"))
    assert receipt.json()["claims"]["customer_id"] == world.agent_customer
    period = f"{datetime.now(UTC):%Y-%m}"
    statement = await client.get(
        f"/v1/owners/{world.owner_id}/statement?period={period}", headers=world.headers("owner")
    )
    assert statement.json()["owner_id"] == world.owner_id
    # Another owner's id, even one that does not exist, is the same 403: nothing is revealed.
    for owner_id in (world.owner_id, "no-such-owner"):
        for what in (f"statement?period={period}", "payouts"):
            url = f"/v1/owners/{owner_id}/{what}"
            assert_problem(await client.get(url, headers=world.headers("other_owner")), 403)


async def test_a_scoped_key_cannot_replay_a_wider_key_of_its_account(
    client: httpx.AsyncClient, demo_runtime: Runtime
) -> None:
    """Idempotency-Keys belong to the account, and a scoped key shares its account: replaying a
    search made by an unscoped sibling key must not hand it passages outside its scope."""
    make = demo_runtime.keys.create_key
    _, wide = await make(customer="roles-scoped-account", role="agent")
    _, narrow = await make(
        customer="roles-scoped-account", role="agent", datasets=["clinical-guidelines"]
    )
    query = "breach of contract remedies and damages"  # case law's subject, not medicine's
    cases = [
        ({"query": query, "datasets": ["case-law-summaries"]}, 403),  # out of scope
        ({"query": query, "top_k": 20}, 409),  # the same key for another request
    ]
    for n, (body, status) in enumerate(cases):
        headers = {"Idempotency-Key": f"roles-replay-{n}"}
        first = await client.post(
            "/v1/search", json=body, headers={**headers, "Authorization": f"Bearer {wide}"}
        )
        assert first.status_code == 200, first.text
        bought = {r["citation"]["dataset_id"] for r in first.json()["results"]}
        assert "case-law-summaries" in bought
        replay = await client.post(
            "/v1/search", json=body, headers={**headers, "Authorization": f"Bearer {narrow}"}
        )
        assert_problem(replay, status)
