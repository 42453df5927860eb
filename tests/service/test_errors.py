"""Every bad input is a 4xx problem+json with a clear detail, never a 500."""

from __future__ import annotations

import httpx
import pytest

from service.app import create_app
from service.runtime import Runtime
from tests.service.conftest import Keys

SEARCH = "/v1/search"


def assert_problem(response: object, status: int, *needles: str) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("application/problem+json")  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["status"] == status
    assert body["type"].startswith("https://fairshare.dev/problems/")
    assert body["title"] and body["detail"]
    for needle in needles:
        assert needle.lower() in body["detail"].lower(), body["detail"]
    return body  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('{"query": "x", ', ""),
        ('{"top_k": 3}', "query"),
        ('{"query": "x", "top_k": 0}', "top_k"),
        ('{"query": "x", "top_k": 51}', "top_k"),
        ('{"query": "x", "top_k": "ten"}', "top_k"),
        # Strict JSON: lax coercion of a numeric or boolean string would hide a client's type bug.
        ('{"query": "x", "top_k": "5"}', "top_k: expected `int`, got `str`"),
        ('{"query": "x", "top_k": "4000"}', "top_k: expected `int`, got `str`"),
        ('{"query": "x", "top_k": 5.0}', "top_k: expected `int`, got `float`"),
        ('{"query": "x", "rerank": "false"}', "rerank"),
        ('{"query": "x", "max_cost_micros": "100"}', "max_cost_micros"),
        ('{"query": 5}', "query: expected `str`, got `int`"),
        ('{"query": ""}', "query"),
        ('{"query": "   "}', "query is blank"),
        ('{"query": "x", "datasets": []}', "datasets"),
        ('{"query": "x", "datasets": ["Not A Slug!"]}', "datasets"),
        ('{"query": "x", "rerank": "yes"}', "rerank"),
        ('{"query": "' + "q" * 5000 + '"}', "query"),
        ('{"query": "x", "max_cost_micros": -5}', "max_cost_micros"),
        ('{"query": "x", "max_cost_micros": 1.5}', "max_cost_micros"),
        ('{"query": "x", "colour": "red"}', "colour"),
        ("[1, 2, 3]", ""),
        ('"just a string"', ""),
    ],
)
async def test_bad_search_bodies_are_400(
    client: httpx.AsyncClient, keys: Keys, body: str, needle: str
) -> None:
    response = await client.post(
        SEARCH, content=body, headers={**keys.auth(keys.agent), "Content-Type": "application/json"}
    )
    assert_problem(response, 400, needle)


async def test_unknown_dataset_is_named_in_the_error(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.post(
        SEARCH, json={"query": "x", "datasets": ["no-such-dataset"]}, headers=keys.auth(keys.agent)
    )
    body = assert_problem(response, 400, "no-such-dataset")
    assert body["datasets"] == ["no-such-dataset"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer fs_not-a-real-key"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer "},
    ],
)
async def test_missing_or_bad_keys_are_401(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    assert_problem(await client.post(SEARCH, json={"query": "x"}, headers=headers), 401)
    assert_problem(await client.get("/v1/datasets", headers=headers), 401)


@pytest.mark.parametrize(
    "body", ['{"query": "x", ', '{"query": "x", "top_k": "5"}', '{"query": "x", "datasets": [""]}']
)
async def test_a_bad_key_is_401_before_the_body_is_read(
    client: httpx.AsyncClient, body: str
) -> None:
    """The key is checked first: an anonymous caller learns nothing about what its body lacks."""
    for headers in ({}, {"Authorization": "Bearer fs_not-a-real-key"}):
        response = await client.post(
            SEARCH, content=body, headers={**headers, "Content-Type": "application/json"}
        )
        assert_problem(response, 401)


async def test_bad_inputs_write_nothing_to_the_ledger(
    client: httpx.AsyncClient,
    keys: Keys,
    demo_runtime: Runtime,
) -> None:
    before = await demo_runtime.hits.count_hits()
    await client.post(SEARCH, json={"query": "x", "top_k": 99}, headers=keys.auth(keys.agent))
    await client.post(SEARCH, json={"query": "x"}, headers={"Authorization": "Bearer nope"})
    assert await demo_runtime.hits.count_hits() == before


async def test_roles_are_enforced(client: httpx.AsyncClient, keys: Keys) -> None:
    assert_problem(
        await client.post(SEARCH, json={"query": "x"}, headers=keys.auth(keys.owner)), 403, "role"
    )
    statement = f"/v1/owners/{keys.owner_id}/statement?period=2026-01"
    assert_problem(await client.get(statement, headers=keys.auth(keys.agent)), 403)
    assert_problem(
        await client.get(
            "/v1/owners/someone-else/statement?period=2026-01", headers=keys.auth(keys.owner)
        ),
        403,
        "another owner",
    )
    assert_problem(
        await client.post(
            "/v1/owners", json={"id": "x", "name": "X"}, headers=keys.auth(keys.agent)
        ),
        403,
    )


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        (
            "/v1/admin/customers/c/topups",
            {"amount_micros": "1000", "reference": "r"},
            "amount_micros",
        ),
        ("/v1/admin/reversals", {"query_id": "q", "reason": "other", "rank": "1"}, "rank"),
    ],
)
async def test_admin_bodies_are_decoded_strictly(
    client: httpx.AsyncClient, keys: Keys, path: str, body: dict[str, object], needle: str
) -> None:
    response = await client.post(path, json=body, headers=keys.auth(keys.admin))
    assert_problem(response, 400, needle, "expected")


@pytest.mark.parametrize("period", ["2026-13", "2026-1", "26-01", "january", "2026-00"])
async def test_bad_periods_are_400(client: httpx.AsyncClient, keys: Keys, period: str) -> None:
    response = await client.get(
        f"/v1/owners/{keys.owner_id}/statement?period={period}", headers=keys.auth(keys.admin)
    )
    assert_problem(response, 400, "period")


async def test_unknown_things_are_404(client: httpx.AsyncClient, keys: Keys) -> None:
    assert_problem(
        await client.get(
            "/v1/owners/nobody/statement?period=2026-01", headers=keys.auth(keys.admin)
        ),
        404,
        "nobody",
    )
    assert_problem(await client.get("/v1/chunks/0" * 1, headers=keys.auth(keys.agent)), 404)
    assert_problem(await client.get("/v1/nothing-here"), 404)


async def test_oversized_bodies_are_413(client: httpx.AsyncClient, keys: Keys) -> None:
    body = '{"query": "x", "pad": "' + "a" * (1024 * 1024 + 10) + '"}'
    response = await client.post(
        SEARCH, content=body, headers={**keys.auth(keys.agent), "Content-Type": "application/json"}
    )
    assert_problem(response, 413)


async def test_idempotency_key_must_be_sane(client: httpx.AsyncClient, keys: Keys) -> None:
    response = await client.post(
        SEARCH,
        json={"query": "x"},
        headers={**keys.auth(keys.agent), "Idempotency-Key": "k" * 300},
    )
    assert_problem(response, 400, "Idempotency-Key")


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b'{"query": "x", "datasets": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", 400, "nested"),
        (b'{"query": "' + b"q" * 100_000 + b'"}', 400, "query"),
        (b'{"query": "caf\xc3\x28 au lait"}', 400, "utf-8"),
        (b'{"query": "\xff\xfe"}', 400, "utf-8"),
        (b'{"query": "x", "top_k": 3, "unknown_field": {"a": [1, 2]}}', 400, "unknown_field"),
        (b'{"query": "x", "top_k": 1e309}', 400, "number out of range"),
        (b"", 400, ""),
    ],
)
async def test_hostile_bodies_are_4xx_and_charge_nothing(
    client: httpx.AsyncClient,
    keys: Keys,
    demo_runtime: Runtime,
    body: bytes,
    status: int,
    needle: str,
) -> None:
    before = await demo_runtime.hits.count_hits()
    response = await client.post(
        SEARCH, content=body, headers={**keys.auth(keys.agent), "Content-Type": "application/json"}
    )
    assert_problem(response, status, *([needle] if needle else []))
    assert await demo_runtime.hits.count_hits() == before


async def test_a_client_that_hangs_up_mid_body_is_no_server_error(
    demo_runtime: Runtime, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """The body stops arriving and the connection closes: nothing is searched or charged, and
    it is logged as the client's doing (a 400), not as an unhandled error with a traceback."""
    app = create_app(runtime=demo_runtime)
    before = await demo_runtime.hits.count_hits()
    messages = iter(
        [
            {"type": "http.request", "body": b'{"query": "adverse poss', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return next(messages)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": SEARCH,
        "raw_path": SEARCH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"authorization", f"Bearer {keys.agent}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", b"200"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    with caplog.at_level("INFO"):
        await app(scope, receive, send)  # type: ignore[arg-type]
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 400
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert await demo_runtime.hits.count_hits() == before
