"""Double entry, the hash chain and append-only storage, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import InvalidInput
from ledger import chain
from ledger.catalog import CatalogStore
from ledger.db import ledger_transaction
from ledger.hits import HitLedger
from ledger.journal import NewEntry, append
from ledger.periods import close_period
from ledger.reversals import reverse_query
from ledger.schema import APPEND_ONLY_TABLES, journal, postings
from ledger.verify import verify
from tests.ledger.support import T0, hit, record, seed_dataset


async def _some_history(catalog: CatalogStore, ledger: HitLedger, engine: AsyncEngine) -> None:
    await seed_dataset(catalog)
    for n in range(1, 6):
        await record(
            ledger, f"q{n}", [hit(f"q{n}", r, price=1_333, share_bps=7_500) for r in (1, 2)]
        )
    await reverse_query(engine, "q2", reason="bad_result")


async def _balances(engine: AsyncEngine) -> dict[str, int]:
    return {b.account_id: b.balance_micros for b in (await verify(engine)).balances}


async def test_each_hit_posts_a_balanced_transaction(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger
) -> None:
    await seed_dataset(catalog)
    await record(
        ledger,
        "q1",
        [hit("q1", 1, price=1_333, share_bps=7_500), hit("q1", 2, price=1_333, share_bps=7_500)],
    )
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(postings).order_by(postings.c.seq, postings.c.account_id))
        ).all()
        kinds = (await conn.execute(select(journal.c.kind, journal.c.period))).all()
    assert kinds == [("hit", "2026-01"), ("hit", "2026-01")]
    assert [(r.seq, r.account_id, r.amount_micros) for r in rows] == [
        (1, "customer:cus_1", 1_333),
        (1, "owner:acme", -1_000),
        (1, "platform:revenue:USD", -333),
        (2, "customer:cus_1", 1_333),
        (2, "owner:acme", -1_000),
        (2, "platform:revenue:USD", -333),
    ]
    assert await _balances(engine) == {
        "customer:cus_1": 2_666,
        "owner:acme": -2_000,
        "platform:revenue:USD": -666,
    }


async def test_reversal_negates_exactly_once(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger
) -> None:
    await _some_history(catalog, ledger, engine)
    again = await reverse_query(engine, "q2", reason="goodwill")  # already reversed: no new rows
    assert {h.reason for h in again.hits} == {"bad_result"}
    balances = await _balances(engine)
    assert balances["customer:cus_1"] == 4 * 2 * 1_333
    assert balances["owner:acme"] == -4 * 2 * 1_000
    async with engine.connect() as conn:
        n = (await conn.execute(select(func.count()).select_from(journal))).scalar_one()
    assert n == 10 + 2
    report = await verify(engine)
    assert report.ok, report.problems
    assert sum(b.balance_micros for b in report.balances) == 0


async def test_reversal_input_is_checked(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger
) -> None:
    await _some_history(catalog, ledger, engine)
    with pytest.raises(InvalidInput, match="unknown reversal reason"):
        await reverse_query(engine, "q1", reason="because")
    with pytest.raises(Exception, match="no hits"):
        await reverse_query(engine, "nope", reason="other")
    with pytest.raises(Exception, match="no hit at rank 9"):
        await reverse_query(engine, "q1", reason="other", rank=9)


async def test_verify_reports_the_first_broken_link(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger
) -> None:
    await _some_history(catalog, ledger, engine)
    assert (await verify(engine)).ok
    # Someone with database access edits a posting: they must first drop the guard.
    async with engine.begin() as conn:
        await _drop_guards(conn, "postings")
        await conn.execute(
            text(
                "UPDATE postings SET amount_micros = amount_micros + 1 WHERE seq = 4 AND account_id = 'owner:acme'"
            )
        )
    report = await verify(engine)
    assert not report.ok and report.first_broken_seq == 4
    assert any("seq 4: hash does not match" in p for p in report.problems)
    assert any("postings sum to 1" in p for p in report.problems)


async def test_verify_sees_a_deleted_transaction(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger
) -> None:
    await _some_history(catalog, ledger, engine)
    async with engine.begin() as conn:
        for table in ("postings", "hits", "journal"):
            await _drop_guards(conn, table)
        await conn.execute(text("DELETE FROM postings WHERE seq = 5"))
        await conn.execute(text("DELETE FROM hits WHERE seq = 5"))
        await conn.execute(text("DELETE FROM journal WHERE seq = 5"))
    report = await verify(engine)
    assert report.first_broken_seq == 6
    assert "seq 6: follows seq 4" in report.problems[0]


async def test_database_refuses_update_and_delete_on_ledger_tables(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger
) -> None:
    await _some_history(catalog, ledger, engine)
    statements = {
        "queries": "UPDATE queries SET cost_micros = 0",
        "hits": "DELETE FROM hits",
        "journal": "UPDATE journal SET reason = 'x'",
        "postings": "UPDATE postings SET amount_micros = 0",
        "accounts": "DELETE FROM accounts",
    }
    assert set(statements) < set(APPEND_ONLY_TABLES)
    for sql in statements.values():
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(sql))
    assert (await verify(engine)).ok


async def test_mixing_currencies_is_refused(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger
) -> None:
    await _some_history(catalog, ledger, engine)
    entry = NewEntry(
        kind=chain.KIND_HIT,
        currency="EUR",
        created_at=T0,
        postings=[(chain.customer_account("cus_1"), 5), (chain.platform_account("EUR"), -5)],
    )
    with pytest.raises(InvalidInput, match="mixing currencies"):
        async with ledger_transaction(engine) as conn:
            await conn.run_sync(append, [entry])
    unbalanced = NewEntry(
        kind=chain.KIND_HIT, currency="USD", created_at=T0, postings=[("customer:x", 5)]
    )
    with pytest.raises(InvalidInput, match="does not balance"):
        async with ledger_transaction(engine) as conn:
            await conn.run_sync(append, [unbalanced])
    assert (await verify(engine)).ok


_WRITE = re.compile(r"^\s*(UPDATE|DELETE)\s+(FROM\s+)?\"?(\w+)", re.IGNORECASE)


async def test_the_application_never_updates_or_deletes_ledger_rows(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger
) -> None:
    """Every ledger operation, run with a listener on every statement sent to the database."""
    issued: list[str] = []

    def listen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if match := _WRITE.match(statement):
            issued.append(f"{match[1].upper()} {match[3]}")

    event.listen(engine.sync_engine, "before_cursor_execute", listen)
    try:
        await _some_history(catalog, ledger, engine)
        await record(ledger, "q9", [hit("q9", 1)], idempotency_key="k")
        await record(ledger, "q10", [hit("q10", 1)], idempotency_key="k")  # replay
        await close_period(engine, "2026-01", now=datetime(2026, 2, 1, tzinfo=UTC))
        await record(ledger, "late", [hit("late", 1)])
        await reverse_query(engine, "q1", reason="duplicate_charge", rank=1)
        assert (await verify(engine)).ok
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", listen)
    assert [w for w in issued if w.split()[1] in APPEND_ONLY_TABLES] == []


async def _drop_guards(conn: object, table: str) -> None:
    execute = conn.execute  # type: ignore[attr-defined]
    if conn.dialect.name == "postgresql":  # type: ignore[attr-defined]
        await execute(text(f"DROP TRIGGER {table}_append_only ON {table}"))
    else:
        await execute(text(f"DROP TRIGGER {table}_no_update"))
        await execute(text(f"DROP TRIGGER {table}_no_delete"))
