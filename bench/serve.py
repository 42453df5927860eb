"""Live-server latency and throughput of `POST /v1/search` against a model-only reference.

    .venv/bin/python bench/serve.py [--data ../shared/data/ir/scifact] [--duration 20]
        [--rerank-duration 60] [--concurrency 1,4,16] [--rebuild] [--limit-docs N]
        [--workers auto|N]  # make bench

What it does, in one process and one run, on this machine:

1. **Index.** SciFact's corpus goes through the real ingest (as `fairshare ingest` runs it:
   chunking, embedding, FAISS, Qdrant local mode, BM25) into `var/bench/<name>/` (git-ignored),
   reused by later runs; `--rebuild` starts it afresh. (Ingest speed against embedding alone is
   bench/ingest_speed.py's.)
2. **Load.** A live `fairshare serve` on a free 127.0.0.1 port (rate limits off, the cross-encoder
   loaded, rerank depth 30) takes `wrk` load at each concurrency: one wrk thread, N connections
   (closed loop: N clients each waiting for its answer), `--duration` seconds (`--rerank-duration`
   with rerank: a reranked search takes far longer), first without
   rerank (`"rerank": false`), then with it. Every request's body is a different query: SciFact's
   queries, then its corpus titles, each run taking a slice no other run uses, so neither the
   rerank score cache nor a query-embedding cache can hit unless a run outlasts its slice (the
   output counts such repeats).
3. **Model-only reference.** The same embedder and cross-encoder, on the server's backends,
   called directly in a Python loop, no server: per query, embed it and, with rerank, score its
   30 (query, title + chunk) pairs, the very candidates the server reranks for it (fetched from
   the server first), for the queries each mode's first run sent (so a one-client p50 overhead
   compares the same queries); throughput with ideal batching (N queries embedded in one call
   and their N x 30 pairs scored in batches of RERANK_BATCH). Each server figure is reported as a
   ratio to it.
4. **Paired rerank, one client.** 40 more queries, new to the server: each one's reranked answer
   from the server, then the same model work alone, back to back; the median of the per-query
   differences is printed beside the targets (`paired` says why it is not one).

The cross-encoder is MiniLM-L6 with a fresh, seeded scoring head (as tests/conftest.py builds
it): no pretrained one is available here. It has the production architecture, so it measures
the stage's *cost*; rerank quality is not measured. Output: a Markdown table on stdout and
bench/out/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from ranking.embedder import Embedder, quiet_model_loading, resolve_model
from ranking.rerank import RERANK_BATCH, PairScorer, build_scorer
from service.runtime import open_runtime, shared_embedder
from service.settings import load_settings

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is scripts, not a package
import ingest_speed
import search_floor
import server_profile

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "serve.json"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ir" / "scifact"
CACHE = ROOT / "var" / "bench"
DATASET = "scifact-bench"
RERANK_DEPTH = 30
TOP_K = 10
# From issue 6.
TARGET_OVERHEAD_MS = {"no_rerank": 10.0, "rerank": 15.0}
PAIRED = 40  # queries in the paired one-client rerank run
FLOOR_QUERIES = 320  # queries for bench/search_floor.py's stages
TARGET_QPS_RATIO = 0.85
STARTUP_SECONDS = 180

LUA = """
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
request = function()
  i = i + 1
  return wrk.format(nil, nil, nil, bodies[(i - 1) %% #bodies + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  local f = io.open("%(out)s", "w")
  f:write(string.format(
    '{"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p95_us": %%d, "p99_us": %%d, ' ..
    '"max_us": %%d, "errors": {"connect": %%d, "read": %%d, "write": %%d, "status": %%d, ' ..
    '"timeout": %%d}}',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
  f:close()
end
"""


def run_context(loadavg_before: list[float]) -> dict[str, Any]:
    """The machine and commit a benchmark ran on, for its JSON (every bench/ script's)."""
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_before": loadavg_before,
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "commit": commit or None,
    }


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def server_env(data_dir: Path, reranker: Path, workers: str) -> dict[str, str]:
    return {
        "FAIRSHARE_WORKERS": workers,
        "FAIRSHARE_DATA_DIR": str(data_dir),
        "FAIRSHARE_RATE_LIMIT_PER_MINUTE": "0",
        "FAIRSHARE_RERANKER_MODEL": str(reranker),
        "FAIRSHARE_RERANK_DEPTH": str(RERANK_DEPTH),
    }


async def build_index(data_dir: Path, corpus: Path, limit: int | None) -> dict[str, Any]:
    """Ingest the corpus as `fairshare ingest` does (its speed: bench/ingest_speed.py)."""
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    settings = load_settings({"FAIRSHARE_DATA_DIR": str(data_dir)})
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "corpus.jsonl"
        documents = ingest_speed.write_source(corpus, source, limit)
        async with open_runtime(settings, with_qdrant=True, with_reranker=False) as runtime:
            # Whole chunks come back, so the model-only reference reranks the same text.
            await ingest_speed.add_priced_dataset(
                runtime, DATASET, "SciFact (BEIR)", snippet_cap_chars=100_000
            )
            started = time.perf_counter()
            report = await runtime.ingest(source, DATASET, progress=True)
            print(report.summary(), file=sys.stderr)
            _, key = await runtime.keys.create_key(customer="bench", role="agent")
    ingest = {
        "documents": documents,
        "chunks": report.chunks_written,
        "ingest_seconds": round(time.perf_counter() - started, 2),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    meta = data_dir / "bench-meta.json"
    meta.write_text(json.dumps({"api_key": key, "ingest": ingest}, indent=2))
    meta.chmod(0o600)
    return ingest


def bench_index(data: Path, limit: int | None, *, rebuild: bool) -> tuple[Path, bool]:
    """The ingested bench index of `data`'s corpus (its first `limit` documents) under
    var/bench/, built when missing or when `rebuild` asks; and whether it was built now."""
    data_dir = CACHE / ("scifact" if limit is None else f"scifact-{limit}")
    build = rebuild or not (data_dir / "bench-meta.json").exists()
    if build:
        asyncio.run(build_index(data_dir, data / "corpus.jsonl", limit))
    return data_dir, build


def build_reranker(directory: Path) -> Path:
    """MiniLM-L6 with a fresh, seeded head: the production architecture, meaningless scores."""
    path = directory / "minilm-cross-encoder"
    if (path / "config.json").exists():
        return path
    quiet_model_loading()
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(1234)
    CrossEncoder(resolve_model(None), num_labels=1, device="cpu").save(str(path))
    return path


def query_pool(data: Path) -> list[str]:
    """Distinct query strings: SciFact's queries, then its corpus titles."""
    seen: dict[str, None] = {}
    for name, field in (("queries.jsonl", "text"), ("corpus.jsonl", "title")):
        with (data / name).open() as handle:
            for line in handle:
                text = " ".join(str(json.loads(line).get(field, "")).split())
                if len(text) >= 12:
                    seen.setdefault(text.lower(), None)
    return list(seen)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`fairshare serve` as a subprocess; output to a log file (an unread pipe would block it)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("FAIRSHARE_")}
        self.env = {**inherited, **env, "FAIRSHARE_HOST": "127.0.0.1"}
        self.env["FAIRSHARE_PORT"] = str(self.port)
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> dict[str, Any]:
        # `fairshare serve` as `python -m service.cli serve`: the same program, with a command
        # line that a `pkill -f "fairshare serve"` elsewhere on a shared machine cannot match.
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "serve"],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"fairshare serve exited; see {self.log}")
            try:
                ready = httpx.get(self.url + "/readyz", timeout=2)
                if ready.status_code == 200:
                    return dict(ready.json())
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise SystemExit(f"fairshare serve did not become ready; see {self.log}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)


def body(query: str, rerank: bool, top_k: int = TOP_K) -> str:
    return json.dumps({"query": query, "top_k": top_k, "rerank": rerank, "datasets": [DATASET]})


def check(server: Server, key: str, queries: Sequence[str], rerank: bool) -> None:
    """Warm up and make sure the server does what the run claims (200, reranked or not)."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    for query in queries:
        reply = httpx.post(
            server.url + "/v1/search", content=body(query, rerank), headers=headers, timeout=60
        )
        if reply.status_code != 200:
            raise SystemExit(f"search failed: {reply.status_code} {reply.text[:300]}")
        if reply.json()["reranked"] != rerank:
            raise SystemExit(f"expected reranked={rerank}; the server's /readyz says why")


def run_wrk(
    server: Server, key: str, queries: Sequence[str], rerank: bool, clients: int, seconds: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        bodies, script, out = Path(tmp) / "bodies", Path(tmp) / "s.lua", Path(tmp) / "out.json"
        bodies.write_text("".join(body(q, rerank) + "\n" for q in queries))
        script.write_text(LUA % {"bodies": bodies, "key": key, "out": out})
        command = ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "120s"]
        command += ["-s", str(script), server.url + "/v1/search"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        raw = json.loads(out.read_text())
    requests = int(raw["requests"])
    if requests == 0:
        raise SystemExit(
            f"wrk completed no request in {seconds} s at {clients} clients: longer --duration"
        )
    return {
        "clients": clients,
        "requests": requests,
        "seconds": round(raw["duration_us"] / 1e6, 2),
        "qps": round(requests / (raw["duration_us"] / 1e6), 2),
        "p50_ms": raw["p50_us"] / 1000,
        "p95_ms": raw["p95_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "errors": raw["errors"],
        # Fewer than a few answers per client: the percentiles are a handful of samples.
        "too_few_requests": requests < 3 * clients,
        "distinct_queries": min(requests, len(queries)),
        "repeated_queries": max(0, requests - len(queries)),
    }


def candidates(server: Server, key: str, queries: Sequence[str]) -> list[list[str]]:
    """What the cross-encoder reads for each query: title + chunk of the fused top 30."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    texts = []
    for query in queries:
        reply = httpx.post(
            server.url + "/v1/search",
            content=body(query, False, RERANK_DEPTH),
            headers=headers,
            timeout=60,
        )
        reply.raise_for_status()
        texts.append([f"{r['citation']['title']}\n{r['text']}" for r in reply.json()["results"]])
    return texts


def paired(
    server: Server,
    key: str,
    embedder: Embedder,
    scorer: PairScorer,
    queries: Sequence[str],
) -> dict[str, Any]:
    """Rerank at one client, one query at a time: the server's answer, then the same query's
    model work alone, back to back; the overhead is the median of the per-query differences.

    Comparing two separate runs' p50s cannot resolve 15 ms on a ~650 ms stage here (the model's
    own p50 moved by 50 ms between runs), and pairing cancels that drift. It is printed beside
    the targets, not as one: alternating two processes on 2 cores slows both sides of a short
    request (a search without rerank took ~30 ms this way against ~11 ms under steady wrk load,
    and its bare embedding ~8 ms against ~3), so the pairing has costs of its own, which it is
    not known to cancel. Each query is new to the server, so no cache answers it."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    server_ms, model_ms = [], []
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
        for query in queries:
            started = time.perf_counter()
            reply = client.post("/v1/search", content=body(query, True))
            server_ms.append((time.perf_counter() - started) * 1000)
            reply.raise_for_status()
            texts = candidates(server, key, [query])[0]
            # Untimed, so the model's threads are awake and its caches warm: the reference is
            # the model at its best, as the server's would be under steady load (a cold start
            # is ~7 ms of a lone embedding here, and it stays in the server's figure).
            embedder.embed_queries([query])
            scorer.score_pairs([(query, texts[0])])
            started = time.perf_counter()
            embedder.embed_queries([query])
            scorer.score_pairs([(query, text) for text in texts])
            model_ms.append((time.perf_counter() - started) * 1000)
    return {
        "queries": len(queries),
        "server_p50_ms": round(percentile(server_ms, 50), 2),
        "model_p50_ms": round(percentile(model_ms, 50), 2),
        "overhead_p50_ms": round(
            percentile([a - b for a, b in zip(server_ms, model_ms, strict=True)], 50), 2
        ),
    }


def model_only(
    embedder: Embedder,
    scorer: PairScorer,
    queries: Sequence[str],
    rerank_queries: Sequence[str],
    passages: Sequence[Sequence[str]],
    batches: Sequence[int],
) -> dict[str, Any]:
    """Per-query model time (one at a time) and queries/s with ideal batching, per mode: over
    `queries` without rerank, over `rerank_queries` and their `passages` with it. Each mode's
    queries are the first its one-client run sent, so its p50 overhead compares the same
    queries (a query's 30 passages set its rerank time, and those vary by a lot)."""
    embedder.embed_queries(queries[:4])  # warm-up
    scorer.score_pairs([(rerank_queries[0], p) for p in passages[0][:4]])
    embed_ms, rerank_ms = [], []
    for query in queries:
        started = time.perf_counter()
        embedder.embed_queries([query])
        embed_ms.append((time.perf_counter() - started) * 1000)
    for query, texts in zip(rerank_queries, passages, strict=True):
        started = time.perf_counter()
        embedder.embed_queries([query])
        scorer.score_pairs([(query, p) for p in texts])
        rerank_ms.append((time.perf_counter() - started) * 1000)

    def throughput(group_queries: Sequence[str], rerank: bool, batch: int) -> float:
        started = time.perf_counter()
        for lo in range(0, len(group_queries), batch):
            group = range(lo, min(len(group_queries), lo + batch))
            embedder.embed_queries([group_queries[i] for i in group])
            if rerank:
                scorer.score_pairs([(group_queries[i], p) for i in group for p in passages[i]])
        return len(group_queries) / (time.perf_counter() - started)

    def latency(values: list[float]) -> dict[str, float]:
        return {f"p{q}_ms": round(percentile(values, q), 2) for q in (50, 95, 99)}

    return {
        "no_rerank": {
            **latency(embed_ms),
            "queries": len(queries),
            "qps": {str(b): round(throughput(queries, False, b), 2) for b in batches},
        },
        "rerank": {
            **latency(rerank_ms),
            "queries": len(rerank_queries),
            "pairs_per_query": round(statistics.mean(len(p) for p in passages), 1),
            "qps": {str(b): round(throughput(rerank_queries, True, b), 2) for b in batches},
        },
    }


def table(result: dict[str, Any], command: str) -> str:
    lines = [f"`{command}`", ""]
    ref = result["model_only"]
    lines += [
        "| mode | clients | p50 ms | p95 ms | p99 ms | searches/s | model-only p50 / p95 / p99 ms"
        " | model-only q/s | p50 ratio | p50 overhead ms | q/s ratio | errors | repeats |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, runs in result["server"].items():
        m = ref[mode]
        for run in runs:
            c = str(run["clients"])
            errors = sum(run["errors"].values())
            few = " (too few requests)"
            lines.append(
                f"| {mode} | {c} | {run['p50_ms']:.1f} | {run['p95_ms']:.1f} | "
                f"{run['p99_ms']:.1f} | {run['qps']:.1f} | {m['p50_ms']:.1f} / {m['p95_ms']:.1f}"
                f" / {m['p99_ms']:.1f} | {m['qps'][c]:.1f} | {run['p50_ratio']:.2f} | "
                f"{run['p50_overhead_ms']:+.1f} | {run['qps_ratio']:.2f} | {errors} | "
                f"{run['repeated_queries']}{few if run['too_few_requests'] else ''} |"
            )
    p = result["paired_rerank_one_client"]
    lines += [
        "",
        f"Paired, rerank, 1 client ({p['queries']} queries; each: the server's answer, then the "
        f"same model work alone): server p50 {p['server_p50_ms']:.1f} ms, model-only p50 "
        f"{p['model_p50_ms']:.1f} ms, p50 of the per-query overheads "
        f"{p['overhead_p50_ms']:+.1f} ms. Not a target figure (`paired` says why).",
    ]
    floor = result["floor_no_rerank"]
    cap = floor["ceiling"]
    lines += [
        "",
        f"Without rerank, what a search costs besides the model (bench/search_floor.py, in "
        f"process, no HTTP, CPU ms per search over {floor['queries']} queries):",
        "",
        *search_floor.lines(floor, cap, ref["no_rerank"]["qps"][str(cap["clients"])]),
    ]
    lines += ["", "Inside the server at the most clients (bench/server_profile.py):", ""]
    for mode, runs in result["server"].items():
        run = max(runs, key=lambda r: r["clients"])
        label = f"{mode}, {run['clients']} clients"
        lines += server_profile.lines(label, run["profile"])
    lines += ["", "| target | figure | met |", "|---|---|---|"]
    for target in result["targets"]:
        met = "yes" if target["met"] else "**no**"
        lines.append(f"| {target['name']} | {target['figure']} | {met} |")
    pairs = ref["rerank"]["pairs_per_query"]
    if pairs < RERANK_DEPTH:
        lines += [
            "",
            f"WARNING: the server returned only {pairs} of {RERANK_DEPTH} candidates per query "
            "on average, so the model-only rerank reference scored fewer pairs than the server's "
            "rerank stage does: the rerank ratios are not valid.",
        ]
    ingest = result["ingest"]
    lines += [
        "",
        f"Index: {ingest['documents']} documents, {ingest['chunks']} chunks "
        f"({'built this run' if ingest['this_run'] else 'cached from ' + ingest['measured_at']}"
        "). Ingest speed against embedding alone: bench/ingest_speed.py.",
    ]
    lines += [
        "",
        "Latency is wrk's, client side, closed loop (each client waits for its answer). The "
        "cross-encoder has a random head: rerank *cost* is measured, rerank quality is not. "
        f"Machine: {result['machine']['cpus']} CPUs, load average before/after "
        f"{result['machine']['loadavg_before']} / {result['machine']['loadavg_after']} "
        "(anything else running on the machine shows up in every figure).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--duration", type=int, default=20, help="seconds per wrk run")
    parser.add_argument(
        "--rerank-duration", type=int, default=60, help="seconds per wrk run with rerank"
    )
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--rebuild", action="store_true", help="ingest again into a fresh dir")
    parser.add_argument("--limit-docs", type=int, default=None, help="ingest only N documents")
    parser.add_argument("--ref-queries", type=int, default=160, help="model-only queries")
    parser.add_argument(
        "--ref-rerank-queries", type=int, default=64, help="model-only queries with rerank"
    )
    parser.add_argument(
        "--workers", default="auto", help="FAIRSHARE_WORKERS for the server (default: auto)"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/serve.py needs wrk: apt-get install wrk")
    levels = [int(c) for c in args.concurrency.split(",")]
    command = shlex.join([".venv/bin/python", "bench/serve.py", *sys.argv[1:]])
    loadavg_before = [round(x, 2) for x in os.getloadavg()]
    data_dir, this_run = bench_index(args.data, args.limit_docs, rebuild=args.rebuild)
    meta = json.loads((data_dir / "bench-meta.json").read_text())
    key = meta["api_key"]
    reranker = build_reranker(CACHE)

    pool = query_pool(args.data)
    warm = pool[-40:]
    pool = pool[:-40]
    fresh, pool = pool[-PAIRED:], pool[:-PAIRED]
    # Rerank runs are ~10x slower, so they need smaller slices of the pool.
    runs = [(False, c) for c in levels] + [(True, c) for c in levels]
    shares = [1 if rerank else 4 for rerank, _ in runs]
    unit = len(pool) // sum(shares)
    slices, lo = [], 0
    for share in shares:
        slices.append(pool[lo : lo + share * unit])
        lo += share * unit

    # The server's own backends (the settings' defaults), exported into the bench data dir as
    # the server does; loaded first, for the paired runs beside the live server.
    settings = load_settings(
        {"FAIRSHARE_DATA_DIR": str(data_dir), "FAIRSHARE_WORKERS": args.workers}
    )
    embedder = shared_embedder(
        settings.embedder_model, settings.embedder_backend, data_dir / "embedder-onnx"
    )
    scorer, _ = build_scorer(
        str(reranker), settings.reranker_backend, cache_dir=data_dir / "reranker-onnx"
    )

    server = Server(server_env(data_dir, reranker, args.workers), CACHE / "serve.log")
    print(f"starting fairshare serve on {server.url} (log {server.log})", file=sys.stderr)
    ready = server.start()
    results: dict[str, list[dict[str, Any]]] = {"no_rerank": [], "rerank": []}
    try:
        for (rerank, clients), queries in zip(runs, slices, strict=True):
            mode = "rerank" if rerank else "no_rerank"
            check(server, key, warm[:10] if not rerank else warm[10:20], rerank)
            print(f"wrk: {mode}, {clients} clients", file=sys.stderr)
            seconds = args.rerank_duration if rerank else args.duration
            assert server.process is not None
            # Each scrape of /metrics answers from one worker: stage sums only with one.
            metrics = server.url if settings.worker_count == 1 else None
            before = server_profile.snapshot(server.process.pid, metrics)
            run = run_wrk(server, key, queries, rerank, clients, seconds)
            after = server_profile.snapshot(server.process.pid, metrics)
            run["profile"] = server_profile.profile(before, after, run["requests"], run["seconds"])
            results[mode].append(run)
        # Each mode's reference runs the queries its first run (one client, by default) sent.
        sent = [results["no_rerank"][0]["requests"], results["rerank"][0]["requests"]]
        ref_queries = slices[0][: min(args.ref_queries, sent[0])]
        rerank_queries = slices[len(levels)][: min(args.ref_rerank_queries, sent[1])]
        passages = candidates(server, key, rerank_queries)
        print("paired: rerank, 1 client", file=sys.stderr)
        one_client = paired(server, key, embedder, scorer, fresh)
    finally:
        server.stop()

    print("model-only reference...", file=sys.stderr)
    ref = model_only(embedder, scorer, ref_queries, rerank_queries, passages, levels)
    print("the search's CPU besides the model (bench/search_floor.py)...", file=sys.stderr)
    floor = asyncio.run(search_floor.measure(data_dir, slices[0][:FLOOR_QUERIES], embedder))
    top = str(max(levels))
    floor["ceiling"] = search_floor.ceiling(
        floor, ref["no_rerank"]["qps"][top], os.cpu_count() or 1
    )
    floor["ceiling"]["clients"] = int(top)

    targets = []
    for mode, runs_ in results.items():
        for run in runs_:
            m = ref[mode]
            run["p50_ratio"] = round(run["p50_ms"] / m["p50_ms"], 2)
            run["p95_ratio"] = round(run["p95_ms"] / m["p95_ms"], 2)
            run["p99_ratio"] = round(run["p99_ms"] / m["p99_ms"], 2)
            run["p50_overhead_ms"] = round(run["p50_ms"] - m["p50_ms"], 2)
            run["qps_ratio"] = round(run["qps"] / m["qps"][str(run["clients"])], 3)
            if run["clients"] == 1:
                limit = TARGET_OVERHEAD_MS[mode]
                targets.append(
                    {
                        "name": f"p50 overhead at 1 client, {mode}: <= {limit:g} ms",
                        "figure": f"{run['p50_overhead_ms']:+.1f} ms",
                        "met": run["p50_overhead_ms"] <= limit,
                    }
                )
            if run["clients"] == 16:
                targets.append(
                    {
                        "name": f"throughput at 16 clients, {mode}: >= {TARGET_QPS_RATIO} of model",
                        "figure": f"{run['qps_ratio']:.3f}",
                        "met": run["qps_ratio"] >= TARGET_QPS_RATIO,
                    }
                )
    ingest = {**meta["ingest"], "this_run": this_run}
    result = {
        "command": command,
        "server": results,
        "model_only": ref,
        "paired_rerank_one_client": one_client,
        "floor_no_rerank": floor,
        "targets": targets,
        "ingest": ingest,
        "config": {
            "top_k": TOP_K,
            "rerank_depth": RERANK_DEPTH,
            "reranker": f"{reranker} (random head; cost only, quality not measured)",
            "embedder_backend": settings.embedder_backend,
            "reranker_backend": settings.reranker_backend,
            "workers": settings.worker_count,
            "model_threads_per_worker": settings.model_thread_count,
            "reranker_ready": ready.get("checks", {}).get("reranker"),
            "rerank_batch": RERANK_BATCH,
            "duration_s": {"no_rerank": args.duration, "rerank": args.rerank_duration},
            "load_generator": "wrk -t1 -cN, closed loop, one distinct query per request",
            "query_pool": len(pool),
        },
        **run_context(loadavg_before),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result, command))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
