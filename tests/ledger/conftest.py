"""Ledger fixtures: every test gets a fresh, migrated database.

`engine` runs each test twice, on SQLite (a file in the test's tmp_path) and on PostgreSQL (a new
database in a throwaway cluster; see postgres.py), so one suite checks that both backends behave
the same. The PostgreSQL half is skipped, with the reason, where no server can be started.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ledger.catalog import CatalogStore
from ledger.db import make_engine, migrate, sqlite_url
from ledger.hits import HitLedger
from ledger.keys import KeyStore
from tests.ledger.postgres import PostgresUnavailable, postgres_server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | PostgresUnavailable]:
    try:
        with postgres_server() as url:
            yield url
    except PostgresUnavailable as exc:
        yield exc


async def _fresh_postgres_database(server_url: str) -> str:
    """A URL whose user sees an empty database: a new role that owns a schema of its own name.

    PostgreSQL's default search_path starts with "$user", so everything the code under test
    creates lands in that schema. Much faster than CREATE DATABASE (~10 ms vs ~300 ms a test).
    """
    name = f"fs_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f"CREATE ROLE {name} LOGIN PASSWORD '{name}'"))
            await conn.execute(text(f"CREATE SCHEMA {name} AUTHORIZATION {name}"))
    finally:
        await admin.dispose()
    url = make_url(server_url).set(username=name, password=name)
    return url.render_as_string(hide_password=False)


async def _drop_postgres_database(server_url: str, url: str) -> None:
    name = make_url(url).username
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
            await conn.execute(text(f"DROP ROLE {name}"))
    finally:
        await admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "data" / "fairshare.db")
    else:
        server = request.getfixturevalue("postgres_url")
        if isinstance(server, PostgresUnavailable):
            pytest.skip(f"PostgreSQL unavailable: {server}")
        url = await _fresh_postgres_database(server)
    eng = make_engine(url)
    await migrate(eng)
    yield eng
    await eng.dispose()
    if request.param == "postgresql":
        await _drop_postgres_database(server, url)


@pytest.fixture
def catalog(engine: AsyncEngine) -> CatalogStore:
    return CatalogStore(engine)


@pytest.fixture
def keys(engine: AsyncEngine) -> KeyStore:
    return KeyStore(engine)


@pytest.fixture
def ledger(engine: AsyncEngine) -> HitLedger:
    return HitLedger(engine)
