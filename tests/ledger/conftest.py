"""Ledger fixtures: every test gets a fresh, migrated database.

`engine` runs each test twice, on SQLite (a file in the test's tmp_path) and on PostgreSQL (a new
database in a throwaway cluster; see postgres.py), so one suite checks that both backends behave
the same. The PostgreSQL half fails, with the reason, where no server can be started: a
ledger that is only tested on SQLite is not tested for production.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.catalog import CatalogStore
from ledger.db import make_engine, migrate, sqlite_url
from ledger.hits import HitLedger
from ledger.keys import KeyStore
from tests.postgres import PostgresUnavailable, drop_postgres_database, fresh_postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "data" / "fairshare.db")
    else:
        server = request.getfixturevalue("postgres_url")
        if isinstance(server, PostgresUnavailable):
            pytest.fail(f"PostgreSQL unavailable: {server} (set FAIRSHARE_TEST_POSTGRES_URL)")
        url = await fresh_postgres_database(server)
    eng = make_engine(url)
    await migrate(eng)
    yield eng
    await eng.dispose()
    if request.param == "postgresql":
        await drop_postgres_database(server, url)


@pytest.fixture
def catalog(engine: AsyncEngine) -> CatalogStore:
    return CatalogStore(engine)


@pytest.fixture
def keys(engine: AsyncEngine) -> KeyStore:
    return KeyStore(engine)


@pytest.fixture
def ledger(engine: AsyncEngine) -> HitLedger:
    return HitLedger(engine)
