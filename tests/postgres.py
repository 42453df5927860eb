"""A throwaway PostgreSQL cluster for the SQLite/PostgreSQL conformance runs.

Uses FAIRSHARE_TEST_POSTGRES_URL (a server URL whose user may CREATE DATABASE) when set; otherwise
starts a private PostgreSQL 15 cluster from the installed binaries in a temporary folder (as the
`postgres` OS user when running as root, since the server refuses to run as root), or reports why
it cannot, so the PostgreSQL half of the suite fails with that reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

PG_BIN_DIRS = [Path("/usr/lib/postgresql/15/bin"), Path("/usr/lib/postgresql/16/bin")]


class PostgresUnavailable(Exception):
    pass


def _bin_dir() -> Path:
    for d in PG_BIN_DIRS:
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            return d
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise PostgresUnavailable("no initdb/pg_ctl found (install postgresql-15)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield an asyncpg SQLAlchemy URL of a server where we may create databases."""
    if url := os.environ.get("FAIRSHARE_TEST_POSTGRES_URL"):
        yield url
        return
    bin_dir = _bin_dir()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres and shutil.which("runuser") is None:
        raise PostgresUnavailable("running as root without runuser")
    root = Path(tempfile.mkdtemp(prefix="fairshare-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if as_postgres:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    port = _free_port()

    def run(*args: str) -> None:
        result = subprocess.run([*as_postgres, *args], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise PostgresUnavailable(f"{args[0]} failed: {result.stderr.strip()[-500:]}")

    try:
        run(
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        # fsync off and no durability: this cluster lives for one test session.
        options = (
            f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        run(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(root / "log"),
            "-w",
            "-t",
            "30",
            "start",
        )
        try:
            yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                [
                    *as_postgres,
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
                capture_output=True,
                timeout=60,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def fresh_postgres_database(server_url: str) -> str:
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


async def drop_postgres_database(server_url: str, url: str) -> None:
    name = make_url(url).username
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
            await conn.execute(text(f"DROP ROLE {name}"))
    finally:
        await admin.dispose()
