from __future__ import annotations

import asyncio
from datetime import datetime

import msgspec
import pytest
from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import ConflictError, InvalidInput
from ledger.db import make_engine, sync_twin
from ledger.hits import HitLedger
from ledger.schema import hits as hit_table
from ledger.schema import queries
from ledger.verify import verify
from tests.ledger.support import hit, record


async def _count(engine: AsyncEngine, table: Table) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_record_writes_query_and_hits(ledger: HitLedger) -> None:
    batch = [hit("q1", 1, price=1_333, share_bps=7_500), hit("q1", 2, price=2_000)]
    assert await record(ledger, "q1", batch, idempotency_key="k1") == b"response q1"
    stored = await ledger.hits_for_query("q1")
    assert stored == batch  # every field, created_at as aware UTC included
    assert stored[0].owner_micros == 1_000 and stored[0].platform_micros == 333
    assert await ledger.count_hits() == 2


async def test_retry_with_same_key_replays_without_charging_again(ledger: HitLedger) -> None:
    await record(ledger, "q1", [hit("q1", 1)], idempotency_key="k1", response=b"original")
    replayed = await ledger.replay(
        customer_id="cus_1", idempotency_key="k1", request_hash="req-hash"
    )
    assert replayed == b"original"
    # A retry that skipped replay() and tried to record again still gets the original.
    again = await record(ledger, "q2", [hit("q2", 1)], idempotency_key="k1", response=b"second")
    assert again == b"original"
    assert await ledger.count_hits() == 1
    assert await ledger.hits_for_query("q2") == []


async def test_unused_key_replays_nothing(ledger: HitLedger) -> None:
    await record(ledger, "q1", [hit("q1", 1)], idempotency_key="k1")
    assert await ledger.replay(customer_id="cus_1", idempotency_key="k2", request_hash="x") is None
    # Keys are per customer: another customer's identical key is unused.
    assert await ledger.replay(customer_id="cus_2", idempotency_key="k1", request_hash="x") is None


async def test_same_key_with_different_body_conflicts(ledger: HitLedger) -> None:
    await record(ledger, "q1", [hit("q1", 1)], idempotency_key="k1")
    with pytest.raises(ConflictError, match="already used with a different request body"):
        await ledger.replay(customer_id="cus_1", idempotency_key="k1", request_hash="other")
    with pytest.raises(ConflictError, match="different request body"):
        await record(ledger, "q2", [hit("q2", 1)], idempotency_key="k1", request_hash="other")
    assert await ledger.count_hits() == 1


async def test_requests_without_key_are_all_recorded(ledger: HitLedger) -> None:
    for q in ("q1", "q2", "q3"):
        assert await record(ledger, q, [hit(q, 1)]) == f"response {q}".encode()
    assert await ledger.count_hits() == 3
    with pytest.raises(ConflictError, match="q1 was already recorded"):
        await record(ledger, "q1", [hit("q1", 1)])


async def test_query_with_no_hits_is_recorded_for_replay(ledger: HitLedger) -> None:
    await ledger.record(
        query_id="q0",
        customer_id="cus_1",
        idempotency_key="k0",
        request_hash="h",
        response=b"{}",
        cost_micros=0,
        currency="USD",
        hits=[],
    )
    assert await ledger.replay(customer_id="cus_1", idempotency_key="k0", request_hash="h") == b"{}"


async def test_concurrent_retries_record_exactly_once(
    ledger: HitLedger, engine: AsyncEngine
) -> None:
    # Four ledgers, as four API processes would have, each with its own group-commit writer.
    writers = [ledger, *(HitLedger(engine) for _ in range(3))]

    async def attempt(n: int) -> bytes:
        query_id = f"q{n}"
        batch = [hit(query_id, rank, price=1_333, share_bps=7_500) for rank in range(1, 6)]
        return await record(
            writers[n % 4],
            query_id,
            batch,
            idempotency_key="same-key",
            response=f"resp {n}".encode(),
        )

    results = await asyncio.gather(*(attempt(n) for n in range(8)))
    assert len(set(results)) == 1
    winner = results[0].decode().split()[1]
    assert await ledger.count_hits() == 5
    assert await _count(engine, queries) == 1
    assert len(await ledger.hits_for_query(f"q{winner}")) == 5
    # The pool really used separate connections, so the race went through the database (on
    # SQLite, the pool of the twin engine that ledger writes run on).
    pool = (sync_twin(engine) or engine.sync_engine).pool
    assert pool.checkedin() > 1  # type: ignore[attr-defined]


async def test_concurrent_records_share_group_commits(
    ledger: HitLedger, engine: AsyncEngine
) -> None:
    async def one(n: int) -> bytes:
        return await record(ledger, f"q{n}", [hit(f"q{n}", 1), hit(f"q{n}", 2)])

    answers = await asyncio.gather(*(one(n) for n in range(8)))
    assert answers == [f"response q{n}".encode() for n in range(8)]
    assert await ledger.count_hits() == 16
    assert ledger.batches_written < 8  # eight requests, fewer transactions


async def test_one_bad_record_does_not_sink_its_batch(ledger: HitLedger) -> None:
    await record(ledger, "taken", [hit("taken", 1)])

    async def one(query_id: str) -> bytes | Exception:
        try:
            return await record(ledger, query_id, [hit(query_id, 1)])
        except ConflictError as exc:
            return exc

    results = await asyncio.gather(*(one(q) for q in ("a", "taken", "b")))
    assert results[0] == b"response a" and results[2] == b"response b"
    assert isinstance(results[1], ConflictError)
    assert await ledger.count_hits() == 3


def _bad(**changes: object) -> list[object]:
    return [msgspec.structs.replace(hit("q1", 1), **changes)]


@pytest.mark.parametrize(
    ("batch", "cost", "message"),
    [
        (_bad(owner_micros=1_401), 2_000, "!= price"),
        (_bad(currency="EUR"), 2_000, "hit in EUR"),
        (_bad(query_id="other"), 2_000, "belongs to query other"),
        (_bad(created_at=datetime(2026, 1, 1)), 2_000, "timezone-aware"),
        ([hit("q1", 1)], 1_999, "sum to 2000"),
        ([hit("q1", 1), hit("q1", 1)], 4_000, "duplicate hit ranks"),
    ],
)
async def test_record_refuses_bad_money(
    ledger: HitLedger, batch: list[object], cost: int, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        await ledger.record(
            query_id="q1",
            customer_id="cus_1",
            idempotency_key="k",
            request_hash="h",
            response=b"r",
            cost_micros=cost,
            currency="USD",
            hits=batch,  # type: ignore[arg-type]
        )
    assert await ledger.count_hits() == 0
    assert await ledger.replay(customer_id="cus_1", idempotency_key="k", request_hash="h") is None


async def test_database_rejects_a_split_that_does_not_add_up(
    ledger: HitLedger, engine: AsyncEngine
) -> None:
    await record(ledger, "q1", [hit("q1", 1)])
    # seq 1 exists; CHECK constraints fire before the unique index on both databases.
    row = msgspec.structs.asdict(hit("q1", 2)) | {"owner_micros": 1_401, "seq": 1}
    with pytest.raises(IntegrityError, match="ck_hits_split_sums"):
        async with engine.begin() as conn:
            await conn.execute(insert(hit_table), row)
    negative = msgspec.structs.asdict(hit("q1", 3)) | {
        "price_micros": -10,
        "owner_micros": -5,
        "platform_micros": -5,
        "seq": 1,
    }
    with pytest.raises(IntegrityError, match="ck_hits_nonnegative"):
        async with engine.begin() as conn:
            await conn.execute(insert(hit_table), negative)
    assert await ledger.count_hits() == 1


async def test_hits_must_belong_to_a_recorded_query(engine: AsyncEngine) -> None:
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(insert(hit_table), msgspec.structs.asdict(hit("ghost", 1)))


async def test_has_hit_tells_what_a_customer_bought(ledger: HitLedger) -> None:
    await record(ledger, "q1", [hit("q1", 1), hit("q1", 2)])
    assert await ledger.has_hit(customer_id="cus_1", chunk_id="guides:doc:2")
    assert not await ledger.has_hit(customer_id="cus_1", chunk_id="guides:doc:3")
    assert not await ledger.has_hit(customer_id="cus_2", chunk_id="guides:doc:2")


async def test_two_processes_append_safely_under_a_stricter_default_isolation(
    engine: AsyncEngine,
) -> None:
    """Two API processes (two engines) writing at once, with PostgreSQL's default isolation set
    to REPEATABLE READ: the ledger lock must still hand each writer the fresh chain head."""
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            await conn.execute(
                text(
                    "ALTER ROLE CURRENT_USER SET default_transaction_isolation = 'repeatable read'"
                )
            )
            await conn.commit()
    engines = [make_engine(url), make_engine(url)]
    try:
        writers = [HitLedger(e) for e in engines]

        async def process(p: int) -> list[bytes]:
            # One record at a time, so the two writers contend for the lock on every write.
            return [
                await record(writers[p], f"q{p}-{n}", [hit(f"q{p}-{n}", 1), hit(f"q{p}-{n}", 2)])
                for n in range(30)
            ]

        answers = await asyncio.gather(process(0), process(1))
    finally:
        for e in engines:
            await e.dispose()
    assert answers == [[f"response q{p}-{n}".encode() for n in range(30)] for p in (0, 1)]
    report = await verify(engine)
    assert report.ok and report.entries == 120, report.problems
