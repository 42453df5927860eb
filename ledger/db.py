"""Engines and migrations: one code path for SQLite (embedded default) and PostgreSQL.

SQLite connections get WAL (readers never block the single writer), enforced foreign keys and a
busy timeout, and SQLAlchemy, not the driver, emits BEGIN: the sqlite3 module otherwise defers BEGIN
to the first DML statement and commits implicitly before DDL, which breaks transactional migrations.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000
# Execution option that makes the next BEGIN on SQLite take the write lock at once.
BEGIN_IMMEDIATE = "fairshare_sqlite_begin_immediate"
# Any constant works; it only has to be the same for every process migrating one database.
PG_MIGRATION_LOCK_KEY = 0x4641_4952  # "FAIR"


def sqlite_url(path: Path) -> str:
    """Return the async SQLAlchemy URL of the SQLite file at `path` (made absolute)."""
    return f"sqlite+aiosqlite:///{Path(path).expanduser().resolve()}"


def make_engine(url: str) -> AsyncEngine:
    """Create an async engine for `url`; for SQLite, create the file's folder and set pragmas."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True)
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)
    event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit mode at the driver: our "begin" listener emits BEGIN instead (see module doc).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        _ensure_wal(cursor)
    finally:
        cursor.close()


def _ensure_wal(cursor: Any) -> None:
    # WAL is a property of the file, so this only does work on a new database. There, processes
    # starting together race to convert it, and SQLite answers "database is locked" without
    # waiting on the busy timeout; the loser retries briefly (this happens once per file, ever).
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            if str(cursor.fetchone()[0]).lower() == "wal":
                return
        except Exception as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise RuntimeError("could not switch the SQLite database to WAL mode")
        time.sleep(0.02)


def _sqlite_on_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(BEGIN_IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


async def migrate(engine: AsyncEngine) -> None:
    """Upgrade the database to the newest schema. Safe at every start and from many processes.

    The whole upgrade runs in one transaction that first takes a database-wide lock (SQLite's write
    lock via BEGIN IMMEDIATE, a PostgreSQL advisory lock), so a second process waits, then finds the
    schema at head and does nothing.
    """
    async with write_transaction(engine) as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK_KEY}
            )
        await conn.run_sync(_upgrade_head)


def alembic_config(connection: Connection | None = None) -> Config:
    """Build the Alembic config in code; env.py uses `connection` when one is given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade_head(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


@asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction that reads and then writes.

    On SQLite it takes the write lock at BEGIN: a deferred transaction that read first cannot
    upgrade to a writer after another connection committed (SQLITE_BUSY, no retry helps), while one
    that waits for the lock up front just queues behind the busy timeout.
    """
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            await conn.execution_options(**{BEGIN_IMMEDIATE: True})
        async with conn.begin():
            yield conn


# Serialises every ledger append across processes on PostgreSQL; SQLite's write lock does it there.
PG_LEDGER_LOCK_KEY = 0x4641_4C47  # "FALG"


@asynccontextmanager
async def ledger_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A write transaction holding the ledger lock: the only way to append to the journal.

    The journal's `seq` and hash chain need one writer at a time, across every API process. On
    PostgreSQL a transaction-scoped advisory lock gives that (released at commit, after the rows
    are visible, so the next holder reads the new chain head); on SQLite the database write lock
    taken at BEGIN IMMEDIATE already does. Callers batch many entries per transaction, so the
    lock costs one round trip per batch, not per hit.
    """
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            await conn.execution_options(**{BEGIN_IMMEDIATE: True})
        else:
            # READ COMMITTED whatever the server's default: each statement after the lock must
            # see what the previous holder committed. Under REPEATABLE READ the snapshot would
            # date from before the lock was granted, and the chain head read would be stale.
            await conn.execution_options(isolation_level="READ COMMITTED")
        async with conn.begin():
            if engine.dialect.name == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LEDGER_LOCK_KEY}
                )
            yield conn
