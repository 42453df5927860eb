"""Engines and migrations: one code path for SQLite (embedded default) and PostgreSQL.

SQLite connections get WAL (readers never block the single writer), enforced foreign keys and a
busy timeout, and SQLAlchemy, not the driver, emits BEGIN: the sqlite3 module otherwise defers BEGIN
to the first DML statement and commits implicitly before DDL, which breaks transactional migrations.

The search path's units of work (`read`, `in_ledger_transaction`) are plain functions of a sync
`Connection`. On PostgreSQL they run on the async engine through `run_sync`, a network round
trip per statement as before. On SQLite each runs whole in one trip to a small thread pool, on a
pysqlite twin of the async engine: through aiosqlite every driver call (BEGIN, cursor, execute,
fetch, close, ROLLBACK) is its own hop between the event loop and the driver's thread, ~9 for
one SELECT, and a search's key lookup, catalog state and passages cost 1.9 ms of wall time and
1.1 ms of the event loop's CPU that way, against 0.26 ms and 0.04 ms in one trip
(`bench/sqlite_trips.py`).
"""

from __future__ import annotations

import asyncio
import os
import time
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000
# Execution option that makes the next BEGIN on SQLite take the write lock at once.
BEGIN_IMMEDIATE = "fairshare_sqlite_begin_immediate"
# Any constant works; it only has to be the same for every process migrating one database.
PG_MIGRATION_LOCK_KEY = 0x4641_4952  # "FAIR"
# Threads running SQLite units of work. sqlite3 releases the GIL while a statement runs, so
# reads overlap the event loop; one writer at a time holds the database lock anyway.
SQLITE_THREADS = 4

T = TypeVar("T")


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


# -- units of work on the search path ------------------------------------------------------------

_twins: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()
_sqlite_pool: ThreadPoolExecutor | None = None
_inherited: list[object] = []


def _after_fork_in_child() -> None:
    # A forked child has none of the parent's pool threads (an inherited executor would queue
    # work forever), and must not use or close the parent's SQLite connections: closing one
    # would drop the parent's POSIX locks on the file. Start afresh; keep the old ones alive.
    global _sqlite_pool
    _inherited.extend([_sqlite_pool, dict(_twins)])
    _sqlite_pool = None
    _twins.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def sync_twin(engine: AsyncEngine) -> Engine | None:
    """A pysqlite engine on the same SQLite file as `engine` (same pragmas, same BEGIN), disposed
    with it; None for PostgreSQL and for in-memory SQLite, which another engine cannot share."""
    url = engine.url
    database = url.database or ""
    in_memory = database in ("", ":memory:") or "mode=memory" in database
    if url.get_backend_name() != "sqlite" or in_memory or url.query.get("mode") == "memory":
        return None
    twin = _twins.get(engine.sync_engine)
    if twin is None:
        twin = create_engine(url.set(drivername="sqlite+pysqlite"))
        event.listen(twin, "connect", _sqlite_on_connect)
        event.listen(twin, "begin", _sqlite_on_begin)
        event.listen(engine.sync_engine, "engine_disposed", lambda _: twin.dispose())
        _twins[engine.sync_engine] = twin
    return twin


async def _in_sqlite_thread(work: Callable[[], T]) -> T:
    global _sqlite_pool
    if _sqlite_pool is None:
        _sqlite_pool = ThreadPoolExecutor(SQLITE_THREADS, thread_name_prefix="sqlite")
    return await asyncio.get_running_loop().run_in_executor(_sqlite_pool, work)


async def read(engine: AsyncEngine, work: Callable[[Connection], T]) -> T:
    """`work(conn)` in one read transaction, in the fewest round trips the driver allows."""
    twin = sync_twin(engine)
    if twin is None:
        async with engine.connect() as conn:
            return await conn.run_sync(work)

    def run() -> T:
        with twin.connect() as conn:
            return work(conn)

    return await _in_sqlite_thread(run)


async def in_ledger_transaction(engine: AsyncEngine, work: Callable[[Connection], T]) -> T:
    """`work(conn)` inside `ledger_transaction`, committed when it returns (see `read`)."""
    twin = sync_twin(engine)
    if twin is None:
        async with ledger_transaction(engine) as conn:
            return await conn.run_sync(work)

    def run() -> T:
        with twin.connect() as conn:
            conn.execution_options(**{BEGIN_IMMEDIATE: True})
            with conn.begin():
                return work(conn)

    return await _in_sqlite_thread(run)
