"""Ledger write throughput: hits booked per second by `HitLedger.record`, SQLite and PostgreSQL.

    .venv/bin/python bench/ledger_throughput.py [--queries 2000] [--hits-per-query 10]
        [--concurrency 64] [--response-bytes 4000] [--pg-url URL | --no-postgres]

For each database: a fresh, migrated ledger; then `--queries` queries of `--hits-per-query` hits
each are recorded by `--concurrency` tasks calling `HitLedger.record` directly (no HTTP, no
search), so the figure is the ledger's alone: the idempotency-key check, the chain head read,
the journal, postings and hits inserts and the commit, group-committed across waiting tasks.
The same number of queries is then recorded by one task (a batch per query) for contrast, and
`verify` checks the chain and balances at the end.

SQLite is a file in a temporary folder (WAL, as the service opens it). PostgreSQL is a throwaway
cluster from tests/postgres.py, which runs with fsync=off and synchronous_commit=off, so its
commits cost no disk flush: an upper bound for a durable server. `--pg-url` (a server URL whose
user may create roles, like FAIRSHARE_TEST_POSTGRES_URL) measures a real server instead; the
bench works in a schema of its own there and drops it. Writes bench/out/ledger_throughput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import shlex
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests/postgres.py starts the throwaway cluster

from contracts import Hit, split_price  # noqa: E402
from ledger.db import make_engine, migrate, sqlite_url  # noqa: E402
from ledger.hits import HitLedger, QueryRecord  # noqa: E402
from ledger.verify import verify  # noqa: E402
from tests.postgres import (  # noqa: E402
    PostgresUnavailable,
    drop_postgres_database,
    fresh_postgres_database,
    postgres_server,
)

OUT = REPO / "bench" / "out" / "ledger_throughput.json"
# The demo catalog's three licences: (owner, dataset, licence, price micros, owner share bps).
LICENCES = (
    ("northwind-health", "clinical-guidelines", "northwind-clinical-2026", 4000, 7000),
    ("halberd-legal", "case-law-summaries", "halberd-caselaw-2026", 2500, 6500),
    ("meridian-research", "market-notes", "meridian-notes-2026", 1333, 7500),
)
CUSTOMERS = 20


@dataclass(frozen=True, slots=True)
class Run:
    backend: str
    tasks: int
    queries: int
    hits: int
    seconds: float
    hits_per_s: float
    queries_per_s: float
    batches: int
    queries_per_batch: float
    p50_ms: float
    p99_ms: float


def make_query(rng: random.Random, hits_per_query: int, response: bytes) -> QueryRecord:
    """One priced query and its hits, as the search route would record them."""
    query_id = uuid.uuid4().hex
    customer_id = f"cus_bench_{rng.randrange(CUSTOMERS)}"
    now = datetime.now(UTC)
    hits = []
    for rank in range(1, hits_per_query + 1):
        owner, dataset, licence, price, share = rng.choice(LICENCES)
        owner_micros, platform_micros = split_price(price, share)
        hits.append(
            Hit(
                query_id=query_id,
                customer_id=customer_id,
                chunk_id=f"{dataset}:{rng.randrange(10_000)}",
                document_id=f"doc-{rng.randrange(1_000)}",
                dataset_id=dataset,
                owner_id=owner,
                licence_id=licence,
                rank=rank,
                price_micros=price,
                owner_micros=owner_micros,
                platform_micros=platform_micros,
                currency="USD",
                created_at=now,
            )
        )
    return QueryRecord(
        query_id=query_id,
        customer_id=customer_id,
        idempotency_key=f"bench-{query_id}",
        request_hash=uuid.uuid4().hex,
        response=response,
        cost_micros=sum(h.price_micros for h in hits),
        currency="USD",
        hits=hits,
    )


async def book(ledger: HitLedger, r: QueryRecord) -> None:
    """Record `r` as the search route does."""
    await ledger.record(
        query_id=r.query_id,
        customer_id=r.customer_id,
        idempotency_key=r.idempotency_key,
        request_hash=r.request_hash,
        response=r.response,
        cost_micros=r.cost_micros,
        currency=r.currency,
        hits=r.hits,
    )


async def measure(
    backend: str,
    engine: AsyncEngine,
    *,
    tasks: int,
    queries: int,
    hits_per_query: int,
    response_bytes: int,
    seed: int,
) -> Run:
    """Record `queries` queries from `tasks` concurrent tasks through a new HitLedger."""
    rng = random.Random(seed)
    response = rng.randbytes(response_bytes)
    calls = [make_query(rng, hits_per_query, response) for _ in range(queries)]
    ledger = HitLedger(engine)
    pending = iter(calls)
    latencies: list[float] = []

    async def worker() -> None:
        for r in pending:  # a shared iterator: each task takes the next query
            started = time.perf_counter()
            await book(ledger, r)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    seconds = time.perf_counter() - started
    await ledger.aclose()
    hits = queries * hits_per_query
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return Run(
        backend=backend,
        tasks=tasks,
        queries=queries,
        hits=hits,
        seconds=round(seconds, 3),
        hits_per_s=round(hits / seconds),
        queries_per_s=round(queries / seconds),
        batches=ledger.batches_written,
        queries_per_batch=round(queries / ledger.batches_written, 1),
        p50_ms=round(cuts[49], 2),
        p99_ms=round(cuts[98], 2),
    )


async def bench_database(
    backend: str, url: str, args: argparse.Namespace
) -> tuple[list[Run], dict[str, object]]:
    """The concurrent run, then the one-task run, on one fresh ledger; then `verify` on it."""
    engine = make_engine(url)
    shape = {"hits_per_query": args.hits_per_query, "response_bytes": args.response_bytes}
    try:
        await migrate(engine)
        # Warm the pool, the statement caches and the accounts before timing anything.
        await measure(backend, engine, tasks=1, queries=10, seed=0, **shape)
        runs = [
            await measure(backend, engine, tasks=tasks, queries=args.queries, seed=tasks, **shape)
            for tasks in (args.concurrency, 1)
        ]
        started = time.perf_counter()
        report = await verify(engine)
        checked = {
            "ok": report.ok,
            "entries": report.entries,
            "seconds": round(time.perf_counter() - started, 3),
            "problems": report.problems[:5],
        }
    finally:
        await engine.dispose()
    return runs, checked


async def main(args: argparse.Namespace) -> int:
    results: dict[str, tuple[list[Run], dict[str, object]]] = {}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        results["sqlite"] = await bench_database(
            "sqlite", sqlite_url(Path(tmp) / "ledger.db"), args
        )
        if not args.no_postgres:
            try:
                server = args.pg_url or stack.enter_context(postgres_server())
            except PostgresUnavailable as exc:
                print(f"PostgreSQL unavailable: {exc}", file=sys.stderr)
                return 1
            url = await fresh_postgres_database(server)
            try:
                results["postgresql"] = await bench_database("postgresql", url, args)
            finally:
                await drop_postgres_database(server, url)

    print(f"command: {command_line()}")
    print(
        f"{args.queries} queries x {args.hits_per_query} hits, {args.response_bytes}-byte "
        f"responses, Python {sys.version.split()[0]}"
    )
    if not args.pg_url and not args.no_postgres:
        print("PostgreSQL: throwaway cluster with fsync=off, synchronous_commit=off")
    header = (
        f"{'backend':<11}{'tasks':>6}{'hits':>8}{'seconds':>9}{'hits/s':>9}{'queries/s':>11}"
        f"{'batches':>9}{'q/batch':>9}{'p50 ms':>9}{'p99 ms':>9}"
    )
    print(header)
    print("-" * len(header))
    for run in itertools.chain.from_iterable(runs for runs, _ in results.values()):
        print(
            f"{run.backend:<11}{run.tasks:>6}{run.hits:>8}{run.seconds:>9.2f}{run.hits_per_s:>9}"
            f"{run.queries_per_s:>11}{run.batches:>9}{run.queries_per_batch:>9}"
            f"{run.p50_ms:>9.2f}{run.p99_ms:>9.2f}"
        )
    for backend, (_, checked) in results.items():
        state = "ok" if checked["ok"] else f"NOT OK {checked['problems']}"
        print(f"verify {backend}: {state} ({checked['entries']} entries, {checked['seconds']} s)")

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "command": command_line(),
                "queries": args.queries,
                "hits_per_query": args.hits_per_query,
                "response_bytes": args.response_bytes,
                "postgres": (
                    "none"
                    if args.no_postgres
                    else "--pg-url"
                    if args.pg_url
                    else "throwaway cluster, fsync=off, synchronous_commit=off"
                ),
                "runs": [asdict(r) for runs, _ in results.values() for r in runs],
                "verify": {backend: checked for backend, (_, checked) in results.items()},
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {OUT.relative_to(REPO)}")
    return 0 if all(checked["ok"] for _, checked in results.values()) else 1


def command_line() -> str:
    """This run's command, with any password in --pg-url masked."""
    argv = list(sys.argv)
    for i, arg in enumerate(argv):
        if i > 0 and argv[i - 1] == "--pg-url":
            argv[i] = make_url(arg).render_as_string(hide_password=True)
        elif arg.startswith("--pg-url="):
            argv[i] = "--pg-url=" + make_url(arg[9:]).render_as_string(hide_password=True)
    return shlex.join([sys.executable, *argv])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--hits-per-query", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--response-bytes", type=int, default=4000)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--pg-url", help="PostgreSQL server URL whose user may create roles")
    source.add_argument("--no-postgres", action="store_true")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
