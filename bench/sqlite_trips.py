"""What a search's catalog reads cost the event loop on SQLite: per statement through aiosqlite,
or as one unit of work in one thread trip (`ledger.db.read`, what the service does).

    .venv/bin/python bench/sqlite_trips.py [--data var/bench/scifact-1000] [--searches 500]

Uses the index `bench/serve.py --limit-docs 1000` builds (run that once first). Each "search"
reads what a search reads before ranking and after it: the API key's row, the catalog's serving
state, and ten passages. Prints wall time and the event loop thread's CPU time per search, for
each way. The loop's Python holds the GIL, and a server process serves roughly one search per
GIL-held span of Python (README, Performance), so trips saved here are throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import Connection

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ledger.catalog import _PASSAGES, _SERVING_STATE  # noqa: E402
from ledger.db import read  # noqa: E402
from ledger.keys import _LIVE_KEY, hash_key  # noqa: E402
from service.runtime import open_runtime  # noqa: E402
from service.settings import load_settings  # noqa: E402

DATASET = "scifact-bench"


async def timed(searches: int, one: Callable[[int], Awaitable[None]]) -> tuple[float, float]:
    for i in range(20):  # warm the pools and SQLAlchemy's statement cache
        await one(i)
    wall, cpu = time.perf_counter(), time.thread_time()
    for i in range(searches):
        await one(i)
    return (
        (time.perf_counter() - wall) * 1000 / searches,
        (time.thread_time() - cpu) * 1000 / searches,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO / "var" / "bench" / "scifact-1000")
    parser.add_argument("--searches", type=int, default=500)
    args = parser.parse_args()
    meta = args.data / "bench-meta.json"
    if not meta.exists():
        raise SystemExit(f"no bench index in {args.data}: run bench/serve.py --limit-docs 1000")
    key_hash = hash_key(json.loads(meta.read_text())["api_key"])
    settings = load_settings({"FAIRSHARE_DATA_DIR": str(args.data)})
    async with open_runtime(settings, with_reranker=False) as runtime:
        engine = runtime.engine
        ids = [c.chunk_id for c in await runtime.catalog.chunk_texts(DATASET)][:200]

        def page(i: int) -> list[str]:
            return ids[i % 190 : i % 190 + 10]

        async def per_statement(i: int) -> None:
            # As the service read before: a connection and a transaction per read.
            async with engine.connect() as conn:
                (await conn.execute(_LIVE_KEY, {"key_hash": key_hash})).first()
            async with engine.connect() as conn:
                (await conn.execute(_SERVING_STATE)).all()
            async with engine.connect() as conn:
                (await conn.execute(_PASSAGES, {"ids": page(i)})).all()

        async def one_trip_each(i: int) -> None:
            await read(engine, lambda c: c.execute(_LIVE_KEY, {"key_hash": key_hash}).first())
            await read(engine, lambda c: c.execute(_SERVING_STATE).all())
            await read(engine, lambda c: c.execute(_PASSAGES, {"ids": page(i)}).all())

        def all_three(conn: Connection, i: int) -> None:
            conn.execute(_LIVE_KEY, {"key_hash": key_hash}).first()
            conn.execute(_SERVING_STATE).all()
            conn.execute(_PASSAGES, {"ids": page(i)}).all()

        async def one_trip(i: int) -> None:
            await read(engine, lambda c: all_three(c, i))

        print("| reads of one search | wall ms | event-loop CPU ms |")
        print("|---|---|---|")
        for name, way in (
            ("per statement, aiosqlite (before)", per_statement),
            ("one `ledger.db.read` per read (now)", one_trip_each),
            ("all three in one `read`", one_trip),
        ):
            wall, cpu = await timed(args.searches, way)
            print(f"| {name} | {wall:.3f} | {cpu:.3f} |")


if __name__ == "__main__":
    asyncio.run(main())
