from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.db import (
    alembic_config,
    in_ledger_transaction,
    make_engine,
    migrate,
    read,
    sqlite_url,
)
from ledger.schema import metadata, owners

ROOT = Path(__file__).resolve().parents[2]


def _diff(conn: Connection) -> list[object]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrated_schema_matches_metadata(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
        tables = await conn.run_sync(lambda c: set(c.dialect.get_table_names(c)))
    assert tables == set(metadata.tables) | {"alembic_version"}


async def test_migrate_is_repeatable_and_keeps_data(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            insert(owners),
            {
                "id": "o",
                "name": "O",
                "email": "",
                "currency": "USD",
                "created_at": datetime.now(UTC),
            },
        )
    await migrate(engine)
    await migrate(engine)
    async with engine.connect() as conn:
        assert (await conn.execute(select(owners.c.id))).scalars().all() == ["o"]
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    assert version == [(ScriptDirectory.from_config(alembic_config()).get_current_head(),)]


def test_sqlite_url_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert sqlite_url(Path("rel/x.db")) == f"sqlite+aiosqlite:///{tmp_path.resolve()}/rel/x.db"


async def test_new_sqlite_file_gets_folder_and_pragmas(tmp_path: Path) -> None:
    eng = make_engine(sqlite_url(tmp_path / "a" / "b" / "f.db"))
    try:
        async with eng.connect() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
            fks = (await conn.execute(text("PRAGMA foreign_keys"))).scalar()
            busy = (await conn.execute(text("PRAGMA busy_timeout"))).scalar()
    finally:
        await eng.dispose()
    assert (mode, fks, busy) == ("wal", 1, 5000)
    assert (tmp_path / "a" / "b" / "f.db").exists()


async def test_timestamps_round_trip_as_aware_utc(engine: AsyncEngine) -> None:
    plus_two = timezone(timedelta(hours=2))
    written = datetime(2026, 3, 1, 1, 30, 0, 123456, tzinfo=plus_two)
    async with engine.begin() as conn:
        await conn.execute(
            insert(owners),
            {"id": "o", "name": "O", "email": "", "currency": "USD", "created_at": written},
        )
    async with engine.connect() as conn:
        read = (await conn.execute(select(owners.c.created_at))).scalar_one()
    assert read.tzinfo is not None and read.utcoffset() == timedelta(0)
    assert read == written
    assert read.hour == 23 and read.day == 28  # 01:30+02:00 is the previous day in UTC


async def test_naive_datetimes_are_refused(engine: AsyncEngine) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        async with engine.begin() as conn:
            await conn.execute(
                insert(owners),
                {
                    "id": "o",
                    "name": "O",
                    "email": "",
                    "currency": "USD",
                    "created_at": datetime(2026, 1, 1),
                },
            )


_MIGRATE = """
import asyncio, sys
from pathlib import Path
from ledger.db import alembic_config, make_engine, migrate, sqlite_url
async def main():
    engine = make_engine(sqlite_url(Path(sys.argv[1])))
    await migrate(engine)
    await engine.dispose()
asyncio.run(main())
"""


async def test_processes_migrating_one_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _MIGRATE, str(db), cwd=ROOT, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    results = [(await p.wait(), (await p.stderr.read()).decode()) for p in procs if p.stderr]
    assert [rc for rc, _ in results] == [0] * 4, results
    eng = make_engine(sqlite_url(db))
    try:
        async with eng.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await eng.dispose()


async def test_concurrent_migrations_on_one_new_postgres_database(
    request: pytest.FixtureRequest,
) -> None:
    from tests.postgres import PostgresUnavailable, fresh_postgres_database

    server = request.getfixturevalue("postgres_url")
    if isinstance(server, PostgresUnavailable):
        pytest.fail(f"PostgreSQL unavailable: {server} (set FAIRSHARE_TEST_POSTGRES_URL)")
    url = await fresh_postgres_database(server)
    engines = [make_engine(url) for _ in range(4)]
    try:
        await asyncio.gather(*(migrate(e) for e in engines))
        async with engines[0].connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        for e in engines:
            await e.dispose()


async def test_upgrade_from_0001_books_existing_hits_into_the_journal(
    engine: AsyncEngine,
) -> None:
    """A database with hits from before double entry comes out chained and verifiable."""
    from alembic import command

    from ledger.verify import verify

    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0001"))
        at = datetime(2026, 3, 4, 5, 6, 7, 891_011, tzinfo=UTC)
        await conn.execute(
            text(
                "INSERT INTO queries (query_id, customer_id, request_hash, response, "
                "cost_micros, currency, created_at) VALUES ('q1', 'c1', 'h', :r, 3000, 'USD', :at)"
            ),
            {"r": b"{}", "at": at},
        )
        for rank, price, owner_share in ((1, 1_000, 700), (2, 2_000, 1_400)):
            await conn.execute(
                text(
                    "INSERT INTO hits (query_id, rank, customer_id, chunk_id, document_id, "
                    "dataset_id, owner_id, licence_id, price_micros, owner_micros, "
                    "platform_micros, currency, created_at) VALUES ('q1', :rank, 'c1', 'ch', "
                    "'d', 'ds', 'o', 'l', :price, :owner, :platform, 'USD', :at)"
                ),
                {
                    "rank": rank,
                    "price": price,
                    "owner": owner_share,
                    "platform": price - owner_share,
                    "at": at,
                },
            )
    await migrate(engine)
    report = await verify(engine)
    assert report.ok, report.problems
    assert report.entries == 2
    assert {b.account_id: b.balance_micros for b in report.balances} == {
        "customer:c1": 3_000,
        "owner:o": -2_100,
        "platform:revenue:USD": -900,
    }


async def test_units_of_work_read_and_write_the_engines_database(engine: AsyncEngine) -> None:
    """`read` and `in_ledger_transaction` (SQLite: a pysqlite twin in a thread; PostgreSQL:
    `run_sync`) see what the async engine committed, and it sees what they commit; a unit
    that raises commits nothing."""
    row = {"id": "o1", "name": "O", "email": "", "currency": "USD", "created_at": datetime.now(UTC)}
    async with engine.begin() as conn:
        await conn.execute(insert(owners), row)
    assert await read(engine, lambda c: c.execute(select(owners.c.id)).scalars().all()) == ["o1"]

    def add(conn: Connection, owner_id: str, fail: bool) -> None:
        conn.execute(insert(owners), {**row, "id": owner_id})
        if fail:
            raise RuntimeError("abandoned")

    await in_ledger_transaction(engine, lambda c: add(c, "o2", False))
    with pytest.raises(RuntimeError, match="abandoned"):
        await in_ledger_transaction(engine, lambda c: add(c, "o3", True))
    async with engine.connect() as conn:
        ids = (await conn.execute(select(owners.c.id).order_by(owners.c.id))).scalars().all()
    assert ids == ["o1", "o2"]


async def test_sqlite_units_of_work_keep_the_pragmas(tmp_path: Path) -> None:
    eng = make_engine(sqlite_url(tmp_path / "f.db"))
    try:
        pragmas = await read(
            eng,
            lambda c: [
                c.execute(text(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            ],
        )
    finally:
        await eng.dispose()
    assert pragmas == ["wal", 1, 5000]


async def test_a_forked_child_reads_without_the_parents_threads(tmp_path: Path) -> None:
    # The parent's pool threads do not survive fork(); an inherited executor would take the
    # child's work and never run it. The child must get its own, and answer.
    eng = make_engine(sqlite_url(tmp_path / "f.db"))
    try:
        await migrate(eng)
        assert await read(eng, lambda c: c.execute(text("SELECT 1")).scalar()) == 1
        pid = os.fork()
        if pid == 0:  # the child: exit 0 only if the read answers within 10 s
            signal.alarm(10)
            try:
                one = asyncio.run(read(eng, lambda c: c.execute(text("SELECT 1")).scalar()))
                os._exit(0 if one == 1 else 1)
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
    finally:
        await eng.dispose()
    assert os.waitstatus_to_exitcode(status) == 0
