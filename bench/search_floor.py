"""What a search costs besides its model, stage by stage, and the throughput ratio that caps.

    .venv/bin/python bench/search_floor.py [--limit-docs 1000] [--queries 320]

Issue 6 asks `POST /v1/search` at 16 clients for >= 0.85 of the model-only throughput (the
embedder alone, ideally batched). But a search must do more than embed its query. Each stage
that every search runs is timed here in process, with no HTTP, no server and no thread
hand-offs, as CPU seconds of this process (all its threads) per search:

- **query language**: lingua on the query, uncached (every benchmark query is new);
- **retrieval and fusion**: FAISS, BM25 and the score fusion over the bench index;
- **passages**: reading the top 10 chunks' passages from the catalog;
- **ledger**: `HitLedger.record` of 10 hits, 16 searches committing concurrently (group
  commits, as under load), on a fresh SQLite file;
- **receipt**: signing the search's receipt.

With the model's CPU per query at batch 16 (and so the reference's queries/s), the *ceiling* is
the ratio a server would reach if nothing else cost anything and every core were always busy:
`cores / (model + floor)` searches/s against the reference's. No server on this machine can beat
it, whatever its HTTP stack. bench/serve.py prints it beside its own reference.

The index is bench/serve.py's (`var/bench/scifact-N/`, built on first use). Output: a table
on stdout and bench/out/search_floor.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts import ReceiptClaims
from ledger.db import make_engine, migrate, sqlite_url
from ledger.hits import HitLedger, QueryRecord
from ranking.embedder import Embedder
from ranking.language import UNDETERMINED, detect_query_language
from ranking.rerank_cache import normalise_query
from service.runtime import open_runtime, shared_embedder
from service.searching import receipt_line
from service.settings import load_settings

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is scripts, not a package
import ledger_throughput

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "search_floor.json"
BATCH = 16  # the reference's batch at 16 clients (bench/serve.py)
HITS = 10  # results per search, bench/serve.py's top_k
LEDGER_WRITERS = 16
WARM = 16  # queries each stage runs untimed first


def cpu_ms(work: Callable[[], object], items: int) -> float:
    """CPU time of this process (every thread) for `work`, per item."""
    started = time.process_time()
    work()
    return (time.process_time() - started) * 1000 / items


async def ledger_ms(records: Sequence[QueryRecord], warm: Sequence[QueryRecord]) -> float:
    """CPU per search of booking `records` (after `warm`), 16 writers at a time, on a fresh
    SQLite ledger (WAL, as the service opens it)."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(sqlite_url(Path(tmp) / "ledger.db"))
        ledger = HitLedger(engine)
        try:
            await migrate(engine)

            async def book_all(todo: Sequence[QueryRecord], writers: int) -> None:
                pending = iter(todo)

                async def writer() -> None:
                    for r in pending:
                        await ledger_throughput.book(ledger, r)

                await asyncio.gather(*(writer() for _ in range(writers)))

            await book_all(warm, 1)
            started = time.process_time()
            await book_all(records, LEDGER_WRITERS)
            return (time.process_time() - started) * 1000 / len(records)
        finally:
            await ledger.aclose()
            await engine.dispose()


async def measure(data_dir: Path, queries: Sequence[str], embedder: Embedder) -> dict[str, Any]:
    """Per-search CPU ms of each stage against the index in `data_dir`, and the model's CPU ms
    and wall ms per query at batch 16. Every stage first runs untimed on the first `WARM`
    queries (lingua's models and the index generations load on first use), then is timed on
    the rest.

    What is loaded is hidden from the garbage collector while it runs, as `fairshare serve`
    hides its runtime (`freeze_loaded_heap`): otherwise a full collection that happens to fall
    inside one stage walks the caller's models too (bench/serve.py's run once booked the ledger
    at 1.5 ms a search against 0.6 alone)."""
    gc.collect()
    gc.freeze()
    try:
        return await _measure(data_dir, queries, embedder)
    finally:
        gc.unfreeze()


async def _measure(data_dir: Path, queries: Sequence[str], embedder: Embedder) -> dict[str, Any]:
    texts = [normalise_query(q) for q in queries]
    if len(set(texts)) < len(texts) or len(texts) <= WARM:
        # `detect_query_language` remembers answers: every timed query must be new to it.
        raise ValueError(f"need more than {WARM} distinct queries")
    timed = texts[WARM:]
    n = len(timed)
    warm_vectors = embedder.embed_queries(texts[:WARM])
    wall = time.perf_counter()
    vectors: list[Any] = []

    def embed_all() -> None:
        for i in range(0, n, BATCH):
            vectors.extend(embedder.embed_queries(timed[i : i + BATCH]))

    model = cpu_ms(embed_all, n)
    model_wall = (time.perf_counter() - wall) * 1000 / n
    for text in texts[:WARM]:
        detect_query_language(text)
    languages: list[str] = []
    stages = {
        "query_language": cpu_ms(lambda: languages.extend(map(detect_query_language, timed)), n)
    }
    settings = load_settings({"FAIRSHARE_DATA_DIR": str(data_dir)})
    async with open_runtime(settings, with_reranker=False) as runtime:
        gc.freeze()
        generations = (await runtime.snapshot()).generations
        pipeline = runtime.pipeline

        def retrieve(text: str, vector: Any, language: str) -> list[tuple[str, float]]:
            return pipeline._retrieve(text, vector, generations, "hybrid", None, language)

        for text, vector in zip(texts[:WARM], warm_vectors, strict=True):
            await runtime.catalog.get_passages([c for c, _ in retrieve(text, vector, "en")][:HITS])
        fused: list[list[tuple[str, float]]] = []
        stages["retrieval_and_fusion"] = cpu_ms(
            lambda: fused.extend(map(retrieve, timed, vectors, languages)), n
        )
        started = time.process_time()
        passages = [await runtime.catalog.get_passages([c for c, _ in f[:HITS]]) for f in fused]
        stages["passages"] = (time.process_time() - started) * 1000 / n
        if not all(passages):
            raise SystemExit(f"the index in {data_dir} returned no passages for some queries")
        # Priced searches of 10 hits and a 4 kB response, as the search route books them.
        rng = random.Random(0)
        response = rng.randbytes(4_000)
        records = [ledger_throughput.make_query(rng, HITS, response) for _ in range(WARM + n)]
        stages["ledger"] = await ledger_ms(records[WARM:], records[:WARM])
        claims = [
            ReceiptClaims(
                query_id=record.query_id,
                customer_id=record.customer_id,
                issued_at=datetime.now(UTC),
                currency=record.currency,
                cost_micros=record.cost_micros,
                hits=[receipt_line(h) for h in record.hits],
            )
            for record in records
        ]
        for claim in claims[:WARM]:
            runtime.receipts.sign(claim)
        stages["receipt"] = cpu_ms(lambda: [runtime.receipts.sign(c) for c in claims[WARM:]], n)
    return {
        "queries": n,
        "undetermined_share": round(languages.count(UNDETERMINED) / n, 2),
        "model_cpu_ms": round(model, 3),
        "model_wall_ms": round(model_wall, 3),
        "stages_cpu_ms": {k: round(v, 3) for k, v in stages.items()},
        "floor_cpu_ms": round(sum(stages.values()), 3),
    }


def ceiling(floor: dict[str, Any], reference_qps: float, cores: int) -> dict[str, float]:
    """The highest searches/s any server could reach here, and its ratio to `reference_qps`."""
    qps = cores * 1000 / (floor["model_cpu_ms"] + floor["floor_cpu_ms"])
    return {"cores": cores, "qps": round(qps, 1), "ratio": round(qps / reference_qps, 3)}


def lines(floor: dict[str, Any], cap: dict[str, float], reference_qps: float) -> list[str]:
    stages = floor["stages_cpu_ms"]
    return [
        "| stage (in process, no HTTP) | CPU ms per search |",
        "|---|---|",
        *(f"| {name.replace('_', ' ')} | {ms:.3f} |" for name, ms in stages.items()),
        f"| **all but the model** | **{floor['floor_cpu_ms']:.3f}** |",
        f"| the model, batch {BATCH} (every thread) | {floor['model_cpu_ms']:.3f} |",
        "",
        f"Ceiling: {cap['cores']:g} cores / ({floor['model_cpu_ms']:.2f} + "
        f"{floor['floor_cpu_ms']:.2f} ms) = {cap['qps']:.0f} searches/s, "
        f"**{cap['ratio']:.2f}** of the model-only {reference_qps:.0f} q/s: the throughput ratio "
        "a server would reach if HTTP, the framework and thread hand-offs cost nothing and every "
        "core were busy.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=ROOT.parent / "shared" / "data" / "ir" / "scifact"
    )
    parser.add_argument("--limit-docs", type=int, default=1000, help="bench index of N documents")
    parser.add_argument("--queries", type=int, default=320)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    import serve  # imports this module: not at the top, where it would be a cycle

    loadavg_before = [round(x, 2) for x in os.getloadavg()]
    data_dir, _ = serve.bench_index(args.data, args.limit_docs, rebuild=False)
    settings = load_settings({"FAIRSHARE_DATA_DIR": str(data_dir)})
    embedder = shared_embedder(
        settings.embedder_model, settings.embedder_backend, data_dir / "embedder-onnx"
    )
    queries = serve.query_pool(args.data)[: args.queries]
    floor = asyncio.run(measure(data_dir, queries, embedder))
    reference_qps = 1000 / floor["model_wall_ms"]
    cap = ceiling(floor, reference_qps, os.cpu_count() or 1)
    command = shlex.join([".venv/bin/python", "bench/search_floor.py", *sys.argv[1:]])
    result = {"command": command, **floor, "reference_qps": round(reference_qps, 1)}
    result |= {"ceiling": cap, **serve.run_context(loadavg_before)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join([f"`{command}`", "", *lines(floor, cap, reference_qps)]))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
