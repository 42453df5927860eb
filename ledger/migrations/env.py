"""Alembic environment for the ledger.

`ledger.db.migrate` hands in an open connection (inside its locked transaction) through
`config.attributes["connection"]`. Run from the alembic CLI instead, it builds an async engine from
`sqlalchemy.url` (or FAIRSHARE_DATABASE_URL) and drives the same code through `run_sync`.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import Connection

from ledger.schema import metadata

config = context.config


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # Our SQLite connections emit their own BEGIN, so DDL there is transactional too.
        transactional_ddl=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async(url: str) -> None:
    from ledger.db import make_engine

    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run_with)
    finally:
        await engine.dispose()


def run() -> None:
    if context.is_offline_mode():
        url = config.get_main_option("sqlalchemy.url") or os.environ["FAIRSHARE_DATABASE_URL"]
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        run_with(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or os.environ["FAIRSHARE_DATABASE_URL"]
    asyncio.run(run_async(url))


run()
