"""The ledger under load, over real HTTP to a live `fairshare serve`: nothing lost, nothing doubled.

Concurrency (SQLite and PostgreSQL): 8 clients send 2,000 searches, each with an Idempotency-Key;
10% are retries of an earlier request (same key, same body), half of them sent while the original
is still in flight. Crash (PostgreSQL, 800 searches): the server is SIGKILLed after 300 answers
and restarted on the same port and data while the clients keep going; a request that lost its
connection is sent again with the same key and body until it is answered. 3% of the requests are
also abandoned by their client before the answer and asked again once the database shows them
committed, so "committed but never answered" happens every run, not only when the kill is lucky.

Afterwards the ledger must hold exactly what the clients received: per query the same passages
at the same ranks and prices, the exact response bytes, one journal transaction per hit, the
customer's account debited exactly the delivered cost; postings sum to zero and `verify` passes.
Each backend gets a fresh database with the demo catalog; each test a customer of its own, so its
checks are exact although the crash test shares the PostgreSQL database with the load test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from contracts import SearchResponse
from ledger import chain
from ledger.db import make_engine
from ledger.schema import hits, journal, postings, queries
from ledger.verify import verify
from service.demo import load_demo_catalog
from service.runtime import open_runtime
from tests.conftest import make_settings
from tests.postgres import PostgresUnavailable, drop_postgres_database, fresh_postgres_database
from tests.service.load_support import (
    LiveServer,
    Outcome,
    Planned,
    Progress,
    new_agent,
    overlapping_retries,
    plan_load,
    run_load,
)

SEARCHES = 1_000
CLIENTS = 8
RETRY_SHARE = 0.10
CRASH_SEARCHES = 500
KILL_AFTER_ANSWERS = 200
ABANDON_SHARE = 0.03
# Retrieval work is not under test here: 20 candidates per retriever (4x the largest top_k asked
# for) instead of 100 makes each search ~12% cheaper on 2 cores and changes nothing the ledger
# sees.
LIGHT_SEARCH = {"FAIRSHARE_CANDIDATE_DEPTH": "20"}

# (rank, chunk id, price, dataset, document, owner): what a client was charged for, per passage.
Line = tuple[int, str, int, str, str, str]


@dataclass(frozen=True)
class Deployment:
    name: str
    server_env: dict[str, str]  # FAIRSHARE_* settings of `fairshare serve`
    database_url: str


async def demo_deployment(name: str, data_dir: Path, database_url: str = "") -> Deployment:
    """The demo catalog loaded into a fresh data dir and database (SQLite when no URL is given).

    A database of its own, not the session's demo runtime: thousands of hits in the shared one
    would shift figures other tests read (statements of the current period).
    """
    settings = make_settings(data_dir, database_url=database_url)
    async with open_runtime(settings, with_reranker=False) as runtime:
        await load_demo_catalog(runtime, progress=False)
    # One key sends ~50 searches a second here, far past the default per-key rate limit: this
    # test is about the ledger, so the limit is off (tests/service/test_rate_limits.py has it).
    env = {"FAIRSHARE_DATA_DIR": str(data_dir), "FAIRSHARE_RATE_LIMIT_PER_MINUTE": "0"}
    if database_url:
        env["FAIRSHARE_DATABASE_URL"] = database_url
    return Deployment(name, env, settings.resolved_database_url)


@pytest_asyncio.fixture(scope="module")
async def sqlite_deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    return await demo_deployment("sqlite", tmp_path_factory.mktemp("load-sqlite"))


@pytest_asyncio.fixture(scope="module")
async def postgresql_deployment(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str | PostgresUnavailable
) -> AsyncIterator[Deployment]:
    if isinstance(postgres_url, PostgresUnavailable):
        pytest.fail(f"PostgreSQL unavailable: {postgres_url}")
    database_url = await fresh_postgres_database(postgres_url)
    try:
        yield await demo_deployment("postgresql", tmp_path_factory.mktemp("load-pg"), database_url)
    finally:
        await drop_postgres_database(postgres_url, database_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def deployment(request: pytest.FixtureRequest) -> Deployment:
    found: Deployment = request.getfixturevalue(f"{request.param}_deployment")
    return found


async def test_concurrent_searches_are_recorded_exactly_once(
    deployment: Deployment, tmp_path: Path
) -> None:
    customer_id, api_key = await new_agent(
        deployment.database_url, f"load-{deployment.name}-{uuid.uuid4().hex[:8]}"
    )
    plan = plan_load(SEARCHES, retry_share=RETRY_SHARE, seed=7, key_prefix=uuid.uuid4().hex)
    server = LiveServer({**deployment.server_env, **LIGHT_SEARCH}, tmp_path / "serve.log")
    await server.start()
    try:
        outcomes = await run_load(server.base_url, api_key, plan, clients=CLIENTS)
    finally:
        server.stop()

    delivered = delivered_queries(plan, outcomes)
    assert len(delivered) == len({p.key for p in plan}) == SEARCHES - round(SEARCHES * RETRY_SHARE)
    # Otherwise the test proved nothing about a retry racing its original.
    assert overlapping_retries(plan, outcomes) > 0
    await check_ledger(deployment.database_url, customer_id, delivered)


async def test_killed_server_neither_loses_nor_doubles_charges(
    postgresql_deployment: Deployment, tmp_path: Path
) -> None:
    deployment = postgresql_deployment
    customer_id, api_key = await new_agent(deployment.database_url, f"crash-{uuid.uuid4().hex[:8]}")
    plan = plan_load(
        CRASH_SEARCHES,
        retry_share=RETRY_SHARE,
        abandon_share=ABANDON_SHARE,
        seed=11,
        key_prefix=uuid.uuid4().hex,
    )
    server = LiveServer({**deployment.server_env, **LIGHT_SEARCH}, tmp_path / "serve.log")
    progress = Progress()
    killed: list[bool] = []
    probe = make_engine(deployment.database_url)

    async def committed(key: str) -> bool:
        async with probe.connect() as conn:
            found = await conn.scalar(
                select(func.count())
                .select_from(queries)
                .where(queries.c.customer_id == customer_id, queries.c.idempotency_key == key)
            )
        return bool(found)

    async def crash_and_restart() -> None:
        await progress.reached(KILL_AFTER_ANSWERS)
        server.kill()
        killed.append(True)
        await server.start()

    await server.start()
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(crash_and_restart())
            load = group.create_task(
                run_load(
                    server.base_url,
                    api_key,
                    plan,
                    clients=CLIENTS,
                    retry_lost_connections=True,
                    committed=committed,
                    progress=progress,
                )
            )
        outcomes = load.result()
    finally:
        server.stop()
        await probe.dispose()

    assert killed, "the server was never killed"
    cut_off = sum(1 for o in outcomes if o.lost_connections)
    assert cut_off > 0, "no request was cut off by the kill"
    # Answered by replaying a response whose first delivery the client never read.
    replayed = sum(1 for o in outcomes if o.committed_unanswered)
    assert replayed > 0, "no abandoned request had been committed before it was asked again"
    delivered = delivered_queries(plan, outcomes)
    assert len(delivered) == len({p.key for p in plan})
    await check_ledger(deployment.database_url, customer_id, delivered)
    print(
        f"\ncrash: {cut_off} requests lost their connection to the killed server; "
        f"{replayed} abandoned requests were answered by replay"
    )


def delivered_queries(plan: list[Planned], outcomes: list[Outcome]) -> dict[str, bytes]:
    """query id -> the response bytes every request with that query's key received.

    Checks that every request was answered 200 and that all requests sharing a key (an original
    and its retries) got byte-identical bodies: one key, one query.
    """
    failed = [
        (p.key, o.status, o.body[:300])
        for p, o in zip(plan, outcomes, strict=True)
        if o.status != 200
    ]
    assert not failed, f"{len(failed)} requests failed, e.g. {failed[:3]}"
    by_key: dict[str, set[bytes]] = defaultdict(set)
    for p, o in zip(plan, outcomes, strict=True):
        by_key[p.key].add(o.body)
    differing = [key for key, bodies in by_key.items() if len(bodies) != 1]
    assert not differing, f"retries of {len(differing)} keys got another body, e.g. {differing[:3]}"
    delivered = {}
    for (body,) in by_key.values():
        delivered[msgspec.json.decode(body, type=SearchResponse).query_id] = body
    assert len(delivered) == len(by_key), "two keys were answered with the same query"
    return delivered


def charged_lines(response: SearchResponse) -> list[Line]:
    return [
        (
            rank,
            r.chunk_id,
            r.price_micros,
            r.citation.dataset_id,
            r.citation.document_id,
            r.citation.owner_id,
        )
        for rank, r in enumerate(response.results, start=1)
    ]


async def check_ledger(database_url: str, customer_id: str, delivered: dict[str, bytes]) -> None:
    """Assert the ledger holds exactly the delivered queries, and is sound as a whole."""
    responses = {
        qid: msgspec.json.decode(body, type=SearchResponse) for qid, body in delivered.items()
    }
    assert all(r.cost_micros == sum(x.price_micros for x in r.results) for r in responses.values())
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            stored = {
                row.query_id: row
                for row in await conn.execute(
                    select(
                        queries.c.query_id,
                        queries.c.response,
                        queries.c.cost_micros,
                    ).where(queries.c.customer_id == customer_id)
                )
            }
            booked: dict[str, list[Line]] = defaultdict(list)
            hit_seqs: set[int] = set()
            for h in await conn.execute(
                select(hits).where(hits.c.customer_id == customer_id).order_by(hits.c.rank)
            ):
                booked[h.query_id].append(
                    (h.rank, h.chunk_id, h.price_micros, h.dataset_id, h.document_id, h.owner_id)
                )
                hit_seqs.add(int(h.seq))
            journal_seqs = {
                int(seq)
                for seq in await conn.scalars(
                    select(journal.c.seq)
                    .join(queries, queries.c.query_id == journal.c.query_id)
                    .where(queries.c.customer_id == customer_id)
                )
            }
            customer_balance = await conn.scalar(
                select(func.coalesce(func.sum(postings.c.amount_micros), 0)).where(
                    postings.c.account_id == chain.customer_account(customer_id)
                )
            )
            postings_total = await conn.scalar(
                select(func.coalesce(func.sum(postings.c.amount_micros), 0))
            )
        report = await verify(engine)
    finally:
        await engine.dispose()

    # Nothing recorded that no client received, nothing received that was not recorded.
    assert set(stored) - set(delivered) == set(), "queries in the ledger that nobody received"
    assert set(delivered) - set(stored) == set(), "delivered queries missing from the ledger"
    assert [q for q in delivered if bytes(stored[q].response) != delivered[q]] == []
    assert [q for q, r in responses.items() if stored[q].cost_micros != r.cost_micros] == []
    # Per query, the hits are the delivered passages, at their ranks and prices.
    wrong = [q for q, r in responses.items() if booked.get(q, []) != charged_lines(r)]
    assert not wrong, (
        f"{len(wrong)} queries' hits differ from what was delivered, e.g. {wrong[0]}: "
        f"booked {booked.get(wrong[0])}, delivered {charged_lines(responses[wrong[0]])}"
    )
    assert set(booked) <= set(delivered), "hits of queries nobody received"
    results_delivered = sum(len(r.results) for r in responses.values())
    assert sum(len(b) for b in booked.values()) == results_delivered
    # One journal transaction per hit, none without one.
    assert journal_seqs == hit_seqs and len(hit_seqs) == results_delivered
    assert customer_balance == sum(r.cost_micros for r in responses.values())
    assert postings_total == 0
    assert report.ok, report.problems[:5]
