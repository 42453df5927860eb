"""Search latency and server memory as the corpus grows: 10k, 100k and 1M chunks (issue 6).

    .venv/bin/python bench/scale.py [--sizes 10000,100000,1000000] [--duration 30] [--rebuild]
        [--seed 0] [--workers 1]

What it does, per size N, on this machine:

1. **Build** (once; reused from `var/bench/scale-<N>/`, git-ignored; `--rebuild` starts afresh),
   in a child process so its memory is gone before the server is measured. N synthetic documents
   go through the real ingest, `ingest.run.ingest_source` as `fairshare ingest` runs it: JSONL
   reader, chunking with the real embedder's tokenizer, FAISS prepare/finalize (exact below 50k
   vectors, IVF above: `ranking.faiss_build`), the BM25 build, and the catalog's `commit_ingest`
   (owner, dataset with a priced licence, documents, chunks) in SQLite. Two substitutions, both
   for time: passages are not embedded by the model (1M texts at ~50/s would take hours), and
   Qdrant is not written (serving reads FAISS; Qdrant is ingest's system of record only).
2. **Load.** A live `fairshare serve` (bench/serve.py's `Server`; rate limits off, no reranker,
   `--workers` processes, default one) on that data dir; one search loads the indexes (timed), a
   few warm it up, then `wrk` at one client for `--duration` seconds, `"rerank": false`, top_k 10,
   every request a different query, so the query-embedding cache never hits. Queries are
   embedded by the real model.
3. **Memory.** The server's VmRSS, VmHWM (peak) and PSS from /proc, summed over its processes,
   when ready (indexes not yet loaded: they load on first search) and after the load; the data
   dir's size on disk.
4. **Stages.** The server's own `timings_ms` (embed, retrieve, total) averaged over fresh queries,
   then, with the server stopped, dense (FAISS) and BM25 candidate retrieval timed apart in this
   process on the same files, at the server's candidate depth: which stage grows with N.

What is synthetic: document text is words drawn independently from SciFact's vocabulary with
their SciFact frequencies (so Zipf-like, stop words included), 40-110 words (one chunk each) and a
6-14-word title; queries are 3-7 distinct content words drawn the same way (frequencies
flattened, stop words left out). Passage vectors are unit 384-d float32 rows from
bench/faiss_scale.py's Gaussian mixture, seeded by a hash of the passage text
(`SyntheticPassages`), so they have cluster structure but no relation to the text or to the
real query vectors: dense latency and memory are measured, relevance is not. Output: Markdown
tables on stdout and bench/out/scale.json, with the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np
from bm25s.stopwords import STOPWORDS_EN
from numpy.typing import NDArray

from contracts import Chunk, ChunkText, Dataset, Document
from ingest.run import ingest_source
from ranking.embedder import Embedder
from ranking.faiss_build import describe
from ranking.faiss_index import FaissIndex
from ranking.lexical import BM25Index, LexicalDoc
from ranking.removal import Removed
from service.runtime import open_runtime, shared_embedder
from service.settings import SETTINGS, load_settings

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is scripts, not a package
import faiss_scale
import ingest_speed
import serve as serve_bench

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "scale.json"
CACHE = ROOT / "var" / "bench"
SCIFACT = ROOT.parent / "shared" / "data" / "ir" / "scifact" / "corpus.jsonl"
DATASET = "scale-synthetic"
META = "scale-meta.json"
# Bump when the generated data changes, so an old build is not silently reused.
DATA_VERSION = 1
# Words per document text: at ~1.3 word-pieces per vocabulary word this stays under the
# 200-token chunk window (ingest.chunking), so each document is one chunk and N documents are N
# chunks.
TEXT_WORDS = (40, 110)
TITLE_WORDS = (6, 14)
QUERY_WORDS = (3, 7)
# Query words are drawn with frequency**this: real queries use content words, rarely the commonest.
QUERY_FLATTEN = 0.5
GENERATE_BLOCK = 10_000
BREAKDOWN_QUERIES = 200
WARM_QUERIES = 20
# More than wrk gets through at one client in 30 s at any size (run_wrk counts repeats).
QUERIES_PER_SIZE = 10_000
IO_TIMEOUT_S = 600  # the first search at 1M loads ~2 GB of index files


class SyntheticPassages:
    """The real embedder for queries and token spans; synthetic vectors for passages.

    A passage's vector is a draw from `faiss_scale.Mixture`, seeded by a hash of its text, so the
    same text always gets the same vector whatever batch it comes in.
    """

    def __init__(self, inner: Embedder, seed: int) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.dim = inner.dim
        self.max_tokens = inner.max_tokens
        self.mixture = faiss_scale.Mixture()
        sampler = self.mixture.sampler(self.dim, seed)
        self.centres: NDArray[np.float32] = sampler.centres
        self.bases: NDArray[np.float32] = sampler.bases
        self.cdf = np.cumsum(sampler.weights)
        # Ingest may tokenize on one thread while it embeds on another, so the two sums can
        # overlap; `first` and `last` bound the whole chunk-and-embed phase in wall time.
        self.chunking_s = 0.0
        self.vectors_s = 0.0
        self.first: float | None = None
        self.last = 0.0

    def embed_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self.inner.embed_queries(texts)

    def embed_passages(self, texts: Sequence[str]) -> NDArray[np.float32]:
        started = time.perf_counter()
        mix = self.mixture
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
            rng = np.random.default_rng(int.from_bytes(digest, "little"))
            cluster = min(int(np.searchsorted(self.cdf, rng.random())), mix.clusters - 1)
            row = rng.standard_normal(self.dim, dtype=np.float32) * (mix.noise / np.sqrt(self.dim))
            coeffs = rng.standard_normal(mix.rank, dtype=np.float32)
            row += (
                self.centres[cluster]
                + (coeffs * (mix.spread / np.sqrt(mix.rank))) @ self.bases[cluster]
            )
            out[i] = row / np.linalg.norm(row)
        self.last = time.perf_counter()
        self.vectors_s += self.last - started
        return out

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        started = time.perf_counter()
        if self.first is None:
            self.first = started
        spans = self.inner.token_spans(text)
        self.chunking_s += time.perf_counter() - started
        return spans


class TimedFaiss:
    """The product's FaissIndex, with its prepare (build + write) timed."""

    name = "faiss"

    def __init__(self, inner: FaissIndex) -> None:
        self.inner = inner
        self.prepare_s = 0.0

    def prepare(
        self,
        dataset_id: str,
        *,
        base_generation: int,
        generation: int,
        add_ids: Sequence[str],
        add_vectors: NDArray[np.float32],
        remove_ids: Sequence[str],
    ) -> None:
        started = time.perf_counter()
        self.inner.prepare(
            dataset_id,
            base_generation=base_generation,
            generation=generation,
            add_ids=add_ids,
            add_vectors=add_vectors,
            remove_ids=remove_ids,
        )
        self.prepare_s += time.perf_counter() - started

    def finalize(self, dataset_id: str, *, generation: int, remove_ids: Sequence[str]) -> None:
        self.inner.finalize(dataset_id, generation=generation, remove_ids=remove_ids)

    def abort(self, dataset_id: str, *, generation: int, add_ids: Sequence[str]) -> None:
        self.inner.abort(dataset_id, generation=generation, add_ids=add_ids)

    def drop(self, dataset_id: str) -> Removed:
        return self.inner.drop(dataset_id)

    def search(
        self, query: NDArray[np.float32], k: int, generations: Mapping[str, int]
    ) -> list[tuple[str, float]]:
        return self.inner.search(query, k, generations)

    def chunk_ids(self, dataset_id: str, generation: int) -> set[str]:
        return self.inner.chunk_ids(dataset_id, generation)

    def close(self) -> None:
        self.inner.close()


class TimedBM25(BM25Index):
    """The product's BM25Index, with its build (tokenise, index, write) timed."""

    build_s = 0.0

    def build(self, dataset_id: str, generation: int, docs: Sequence[LexicalDoc]) -> None:
        started = time.perf_counter()
        super().build(dataset_id, generation, docs)
        self.build_s += time.perf_counter() - started


class TimedCatalog:
    """The product's CatalogStore as ingest sees it, with `commit_ingest` timed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.commit_s = 0.0

    async def generations(self) -> dict[str, int]:
        return dict(await self.inner.generations())

    async def get_dataset(self, dataset_id: str) -> Dataset:
        dataset: Dataset = await self.inner.get_dataset(dataset_id)
        return dataset

    async def document_hashes(self, dataset_id: str) -> dict[str, str]:
        return dict(await self.inner.document_hashes(dataset_id))

    async def chunk_texts(self, dataset_id: str) -> list[ChunkText]:
        return list(await self.inner.chunk_texts(dataset_id))

    async def commit_ingest(
        self,
        *,
        dataset_id: str,
        expected_generation: int,
        upserts: Sequence[tuple[Document, str, Sequence[Chunk]]],
        deletes: Sequence[str],
    ) -> int:
        started = time.perf_counter()
        generation = await self.inner.commit_ingest(
            dataset_id=dataset_id,
            expected_generation=expected_generation,
            upserts=upserts,
            deletes=deletes,
        )
        self.commit_s += time.perf_counter() - started
        return int(generation)


class Vocabulary:
    """SciFact's lowercase words with their frequencies: the source of all synthetic text."""

    def __init__(self, corpus: Path) -> None:
        counts: Counter[str] = Counter()
        with corpus.open() as handle:
            for line in handle:
                doc = json.loads(line)
                counts.update(re.findall(r"[a-z]{2,}", f"{doc['title']} {doc['text']}".lower()))
        words = [w for w, c in counts.most_common() if c >= 2]
        self.words = np.array(words, dtype=object)
        freq = np.array([counts[w] for w in words], dtype=np.float64)
        self.p = freq / freq.sum()
        stop = set(STOPWORDS_EN)  # what BM25 drops for English (ranking.analysis)
        content = np.array([len(w) >= 3 and w not in stop for w in words])
        flat = np.where(content, freq**QUERY_FLATTEN, 0.0)
        self.query_p = flat / flat.sum()

    def write_documents(self, path: Path, n: int, seed: int) -> None:
        """`n` JSONL lines, one single-chunk document each."""
        rng = np.random.default_rng([seed, n])
        encoder = msgspec.json.Encoder()
        with path.open("wb") as out:
            for start in range(0, n, GENERATE_BLOCK):
                out.write(
                    b"".join(self._block(rng, encoder, start, min(GENERATE_BLOCK, n - start)))
                )

    def _block(
        self, rng: np.random.Generator, encoder: msgspec.json.Encoder, start: int, m: int
    ) -> list[bytes]:
        lines: list[bytes] = []
        title_len = rng.integers(TITLE_WORDS[0], TITLE_WORDS[1] + 1, m)
        text_len = rng.integers(TEXT_WORDS[0], TEXT_WORDS[1] + 1, m)
        draws = self.words[rng.choice(len(self.words), int((title_len + text_len).sum()), p=self.p)]
        at = 0
        for i in range(m):
            title = " ".join(draws[at : at + title_len[i]]).capitalize()
            at += title_len[i]
            text = " ".join(draws[at : at + text_len[i]]).capitalize() + "."
            at += text_len[i]
            record = {"id": f"syn-{start + i:07d}", "title": title, "text": text}
            lines.append(encoder.encode({**record, "language": "en"}) + b"\n")
        return lines

    def queries(self, n: int, seed: int) -> list[str]:
        """`n` distinct queries of content words."""
        rng = np.random.default_rng([seed, 7])
        seen: dict[str, None] = {}
        while len(seen) < n:
            k = int(rng.integers(QUERY_WORDS[0], QUERY_WORDS[1] + 1))
            picked = rng.choice(len(self.words), k, replace=False, p=self.query_p)
            seen.setdefault(" ".join(self.words[picked]), None)
        return list(seen)


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants: `fairshare serve` may run worker processes (FAIRSHARE_WORKERS)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return sorted(tree)


def memory_mib(pid: int) -> dict[str, Any]:
    """VmRSS, VmHWM (peak RSS) and PSS of the server and every process under it.

    RSS counts shared pages in every process that maps them, so the sums over-count what
    several workers share; PSS splits shared pages between their users and sums to the truth.
    """
    per: list[dict[str, float]] = []
    for proc in process_tree(pid):
        try:
            status = Path(f"/proc/{proc}/status").read_text().splitlines()
            rollup = Path(f"/proc/{proc}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        row: dict[str, float] = {"pid": proc}
        for line in status + rollup:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM", "Pss"):
                row[name] = round(int(value.split()[0]) / 1024, 1)  # kB
        per.append(row)
    return {
        "processes": len(per),
        "rss": round(sum(r.get("VmRSS", 0) for r in per), 1),
        "pss": round(sum(r.get("Pss", 0) for r in per), 1),
        "peak": round(sum(r.get("VmHWM", 0) for r in per), 1),
        "per_process": per,
    }


def disk_mib(path: Path) -> dict[str, float]:
    """Allocated size of the data dir and its main parts."""
    parts: dict[str, float] = {}
    total = 0
    for file in path.rglob("*"):
        if file.is_file() and not file.is_symlink():
            size = file.stat().st_blocks * 512
            total += size
            relative = file.relative_to(path).parts
            # A region's partition (regions/<region>/...) is reported by its parts.
            top = relative[2] if relative[0] == "regions" and len(relative) >= 3 else relative[0]
            key = "catalog" if top.startswith("fairshare.db") else top
            parts[key] = parts.get(key, 0) + size
    wanted = ("faiss", "bm25", "catalog", "embedder-onnx")
    return {"total": round(total / 2**20, 1)} | {
        k: round(parts[k] / 2**20, 1) for k in wanted if k in parts
    }


def build(n: int, seed: int) -> None:
    """Runs in a child process: generate, ingest, record stage times in the data dir."""
    data_dir = CACHE / f"scale-{n}"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    started = time.perf_counter()
    vocab = Vocabulary(SCIFACT)
    source = data_dir / "source.jsonl"
    vocab.write_documents(source, n, seed)
    generate_s = time.perf_counter() - started
    print(f"scale-{n}: generated {n} documents in {generate_s:.1f} s", file=sys.stderr)
    settings = load_settings({"FAIRSHARE_DATA_DIR": str(data_dir)})

    async def run() -> dict[str, Any]:
        async with open_runtime(settings, with_qdrant=False, with_reranker=False) as runtime:
            await ingest_speed.add_priced_dataset(
                runtime, DATASET, "Synthetic scale corpus", snippet_cap_chars=2_000
            )
            embedder = SyntheticPassages(runtime.embedder, seed)
            faiss_index = TimedFaiss(runtime.faiss)
            lexical = TimedBM25(settings.partition_dir / "bm25")
            catalog = TimedCatalog(runtime.catalog)
            began = time.perf_counter()
            report = await ingest_source(
                source,
                dataset_id=DATASET,
                catalog=catalog,
                embedder=embedder,
                vector_indexes=[faiss_index],  # no Qdrant: serving reads FAISS
                lexical=lexical,
                lock_dir=runtime.lock_dir,
                progress=True,
            )
            ingest_s = time.perf_counter() - began
            print(report.summary(), file=sys.stderr)
            if report.errors:
                raise SystemExit(f"bad synthetic records: {report.errors[:3]}")
            _, key = await runtime.keys.create_key(customer="bench-scale", role="agent")
        chunk_and_embed_s = embedder.last - (embedder.first or embedder.last)
        staged = chunk_and_embed_s + faiss_index.prepare_s + lexical.build_s + catalog.commit_s
        return {
            "api_key": key,
            "generation": report.generation,
            "chunks": report.chunks_written,
            "documents": report.added,
            "seconds": {
                "generate_text": round(generate_s, 1),
                "ingest_total": round(ingest_s, 1),
                "chunk_and_embed": round(chunk_and_embed_s, 1),
                "tokenizer_calls": round(embedder.chunking_s, 1),
                "synthetic_vectors": round(embedder.vectors_s, 1),
                "faiss_prepare": round(faiss_index.prepare_s, 1),
                "bm25_build": round(lexical.build_s, 1),
                "catalog_commit": round(catalog.commit_s, 1),
                "other_ingest": round(ingest_s - staged, 1),
            },
        }

    result = asyncio.run(run())
    source.unlink()
    result |= {
        "n": n,
        "seed": seed,
        "data_version": DATA_VERSION,
        "build_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    meta = data_dir / META
    meta.write_text(json.dumps(result, indent=2))
    meta.chmod(0o600)


def server_timings(server: serve_bench.Server, key: str, queries: Sequence[str]) -> dict[str, Any]:
    """Mean of the server's own per-stage timings over fresh queries, sent one at a time."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    stages: dict[str, list[float]] = {"embed": [], "retrieve": [], "total": []}
    for query in queries:
        reply = httpx.post(
            server.url + "/v1/search",
            content=serve_bench.body(query, False),
            headers=headers,
            timeout=IO_TIMEOUT_S,
        )
        if reply.status_code != 200:
            raise SystemExit(f"search failed: {reply.status_code} {reply.text[:300]}")
        timings = reply.json()["timings_ms"]
        for stage, values in stages.items():
            values.append(float(timings[stage]))
    return {f"{stage}_ms": round(statistics.mean(v), 2) for stage, v in stages.items()}


def retrieval_breakdown(data_dir: Path, generation: int, queries: Sequence[str]) -> dict[str, Any]:
    """Dense and BM25 candidate retrieval timed apart, in process, on the served files."""
    settings = load_settings({"FAIRSHARE_DATA_DIR": str(data_dir)})
    embedder = shared_embedder(
        settings.embedder_model, settings.embedder_backend, data_dir / "embedder-onnx"
    )
    vectors = embedder.embed_queries(list(queries))
    generations = {DATASET: generation}
    depth = settings.candidate_depth
    faiss_index = FaissIndex(settings.partition_dir / "faiss", embedder.dim)
    lexical = BM25Index(settings.partition_dir / "bm25")
    started = time.perf_counter()
    faiss_index.search(vectors[0], depth, generations)
    faiss_load_s = time.perf_counter() - started
    started = time.perf_counter()
    lexical.search(queries[0], depth, generations)
    bm25_load_s = time.perf_counter() - started
    dense_ms, bm25_ms = [], []
    for query, vector in zip(queries, vectors, strict=True):
        started = time.perf_counter()
        faiss_index.search(vector, depth, generations)
        dense_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        lexical.search(query, depth, generations)
        bm25_ms.append((time.perf_counter() - started) * 1000)
    loaded = faiss_index._load(DATASET, generation)
    result = {
        "candidate_depth": depth,
        "queries": len(queries),
        "faiss_index": describe(loaded.index) if loaded is not None else None,
        "dense_p50_ms": round(serve_bench.percentile(dense_ms, 50), 2),
        "dense_p95_ms": round(serve_bench.percentile(dense_ms, 95), 2),
        "bm25_p50_ms": round(serve_bench.percentile(bm25_ms, 50), 2),
        "bm25_p95_ms": round(serve_bench.percentile(bm25_ms, 95), 2),
        "faiss_load_s": round(faiss_load_s, 1),
        "bm25_load_s": round(bm25_load_s, 1),
    }
    faiss_index.close()
    return result


def measure(
    n: int, meta: dict[str, Any], queries: list[str], duration: int, workers: str | None
) -> dict[str, Any]:
    data_dir = CACHE / f"scale-{n}"
    key = meta["api_key"]
    disk = disk_mib(data_dir)  # before the load adds hits to the ledger
    env = {"FAIRSHARE_DATA_DIR": str(data_dir), "FAIRSHARE_RATE_LIMIT_PER_MINUTE": "0"}
    if workers is not None:
        env["FAIRSHARE_WORKERS"] = workers
    server = serve_bench.Server(env, CACHE / f"scale-{n}.serve.log")
    print(f"scale-{n}: starting fairshare serve on {server.url}", file=sys.stderr)
    ready = server.start()
    assert server.process is not None
    pid = server.process.pid
    memory_ready = memory_mib(pid)
    timing_queries = queries[:BREAKDOWN_QUERIES]
    warm = queries[BREAKDOWN_QUERIES : BREAKDOWN_QUERIES + WARM_QUERIES]
    load_queries = queries[BREAKDOWN_QUERIES + WARM_QUERIES :]
    try:
        started = time.perf_counter()
        serve_bench.check(server, key, warm[:1], False)  # loads FAISS and BM25
        first_search_s = time.perf_counter() - started
        serve_bench.check(server, key, warm[1:], False)
        print(f"scale-{n}: wrk, 1 client, {duration} s", file=sys.stderr)
        load = serve_bench.run_wrk(server, key, load_queries, False, 1, duration)
        loadavg = round(os.getloadavg()[0], 2)
        memory = memory_mib(pid)
        stages = server_timings(server, key, timing_queries)
    finally:
        server.stop()
    return {
        "n": n,
        "chunks": meta["chunks"],
        "build": {
            "seconds": meta["seconds"],
            "peak_rss_mib": meta["build_peak_rss_mib"],
            "built_at": meta["built_at"],
        },
        "ready": ready.get("checks"),
        "first_search_s": round(first_search_s, 2),
        # Anything else on the machine shows in the latencies: 1-minute load average after wrk
        # (wrk and the server alone make about 1).
        "loadavg_1min_after_wrk": loadavg,
        "wrk": load,
        # Sums over the server's processes (one unless --workers says more).
        "server_memory_mib": {"ready": memory_ready, "after_load": memory},
        "disk_mib": disk,
        "server_timings_ms": stages,
        "in_process": retrieval_breakdown(data_dir, meta["generation"], timing_queries),
    }


def rss(row: Mapping[str, Any]) -> float:
    return float(row["server_memory_mib"]["after_load"]["rss"])


def growth(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """p50 ratio between successive sizes against the size ratio; sub-linear: p50 ratio << size."""
    base = rows[0]["wrk"]["p50_ms"]
    out = []
    for lo, hi in itertools.pairwise(rows):
        out.append(
            {
                "from": lo["n"],
                "to": hi["n"],
                "size_ratio": round(hi["n"] / lo["n"], 2),
                "p50_ratio": round(hi["wrk"]["p50_ms"] / lo["wrk"]["p50_ms"], 3),
                "p50_minus_smallest_ms": round(hi["wrk"]["p50_ms"] - base, 2),
                "rss_ratio": round(rss(hi) / rss(lo), 2),
            }
        )
    return out


def table(result: dict[str, Any]) -> str:
    rows = result["sizes"]
    lines = [f"`{result['command']}`", ""]
    lines += [
        "| chunks | build s | p50 ms | p95 ms | p99 ms | q/s | requests | RSS MiB | peak RSS MiB"
        " | PSS MiB | RSS at ready MiB | disk MiB | first search s | load avg during |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        w = r["wrk"]
        m, ready = r["server_memory_mib"]["after_load"], r["server_memory_mib"]["ready"]
        errors = sum(w["errors"].values())
        procs = f" ({m['processes']} processes)" if m["processes"] > 1 else ""
        lines.append(
            f"| {r['chunks']:,} | {r['build']['seconds']['ingest_total']:.0f} | {w['p50_ms']:.1f} "
            f"| {w['p95_ms']:.1f} | {w['p99_ms']:.1f} | {w['qps']:.1f} | {w['requests']}"
            f"{f' ({errors} errors)' if errors else ''} | {m['rss']:.0f}{procs} | {m['peak']:.0f} "
            f"| {m['pss']:.0f} | {ready['rss']:.0f} | {r['disk_mib']['total']:.0f} "
            f"| {r['first_search_s']:.1f} | {r['loadavg_1min_after_wrk']} |"
        )
    lines += [
        "",
        "| from | to | size ratio | p50 ratio | p50 - smallest p50 ms | RSS ratio |",
        "|---|---|---|---|---|---|",
    ]
    for g in result["growth"]:
        lines.append(
            f"| {g['from']:,} | {g['to']:,} | {g['size_ratio']:g} | {g['p50_ratio']:.2f} | "
            f"{g['p50_minus_smallest_ms']:+.1f} | {g['rss_ratio']:.2f} |"
        )
    lines += [
        "",
        "| chunks | server embed / retrieve / total ms (mean) | dense p50 / p95 ms | "
        "BM25 p50 / p95 ms | FAISS index | index load s (FAISS / BM25) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        s, p = r["server_timings_ms"], r["in_process"]
        lines.append(
            f"| {r['chunks']:,} | {s['embed_ms']:.1f} / {s['retrieve_ms']:.1f} / "
            f"{s['total_ms']:.1f} | {p['dense_p50_ms']:.2f} / {p['dense_p95_ms']:.2f} | "
            f"{p['bm25_p50_ms']:.2f} / {p['bm25_p95_ms']:.2f} | {p['faiss_index']} | "
            f"{p['faiss_load_s']:.1f} / {p['bm25_load_s']:.1f} |"
        )
    stages = [
        "generate_text",
        "chunk_and_embed",
        "tokenizer_calls",
        "synthetic_vectors",
        "faiss_prepare",
        "bm25_build",
        "catalog_commit",
        "other_ingest",
        "ingest_total",
    ]
    lines += [
        "",
        "| chunks | "
        + " | ".join(s.replace("_", " ") + " s" for s in stages)
        + " | peak RSS MiB |",
        "|---|" + "---|" * (len(stages) + 1),
    ]
    for r in rows:
        sec = r["build"]["seconds"]
        cells = " | ".join("-" if s not in sec else f"{sec[s]:.1f}" for s in stages)
        lines.append(f"| {r['chunks']:,} | {cells} | {r['build']['peak_rss_mib']:.0f} |")
    machine = result["machine"]
    lines += [
        "",
        f"wrk at 1 client (closed loop), {result['config']['duration_s']} s per size, "
        "`rerank: false`, top_k 10, every query distinct; latency is wrk's, client side. "
        "Build s is the ingest (`ingest_source`) alone; text generation is listed apart; "
        "tokenizer calls and synthetic vectors are time spent inside the chunk-and-embed phase "
        "(on overlapping threads where ingest runs them so); other is reading, hashing and "
        "building rows. "
        "Passage vectors are synthetic (see the docstring); Qdrant is not written. "
        f"Machine: {machine['cpus']} CPUs, load average before/after "
        f"{machine['loadavg_before']} / {machine['loadavg_after']}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--duration", type=int, default=30, help="seconds of wrk per size")
    parser.add_argument("--rebuild", action="store_true", help="build every size afresh")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers",
        default="1",
        help="FAIRSHARE_WORKERS for the server (default 1: one process, so RSS is one figure; "
        "every worker loads its own copy of the indexes)",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.build_only:
        for n in sizes:
            build(n, args.seed)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("bench/scale.py needs wrk: apt-get install wrk")
    if not SCIFACT.exists():
        raise SystemExit(f"bench/scale.py draws its vocabulary from {SCIFACT}, which is missing")
    command = shlex.join([".venv/bin/python", "bench/scale.py", *sys.argv[1:]])
    # run_wrk and check build request bodies with bench/serve.py's dataset id.
    serve_bench.DATASET = DATASET
    # Only where this checkout's settings know FAIRSHARE_WORKERS.
    workers = args.workers if any(x.name == "workers" for x in SETTINGS) else None
    loadavg_before = [round(x, 2) for x in os.getloadavg()]
    vocab = Vocabulary(SCIFACT)
    # A different slice of queries per size, so no size benefits from another's cache.
    queries = vocab.queries(len(sizes) * QUERIES_PER_SIZE, args.seed)
    rows = []
    for n in sizes:
        meta_path = CACHE / f"scale-{n}" / META
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        reuse = meta.get("data_version") == DATA_VERSION and meta.get("seed") == args.seed
        if args.rebuild or not reuse:
            print(f"scale-{n}: building", file=sys.stderr)
            child = [sys.executable, __file__, "--build-only", "--sizes", str(n)]
            subprocess.run([*child, "--seed", str(args.seed)], check=True)
            meta = json.loads(meta_path.read_text())
        i = sizes.index(n)
        mine = queries[i * QUERIES_PER_SIZE : (i + 1) * QUERIES_PER_SIZE]
        row = measure(n, meta, mine, args.duration, workers)
        row["build"]["this_run"] = args.rebuild or not reuse
        rows.append(row)
    result = {
        "command": command,
        "sizes": rows,
        "growth": growth(rows),
        "config": {
            "duration_s": args.duration,
            "clients": 1,
            "top_k": serve_bench.TOP_K,
            "rerank": False,
            "reranker_loaded": False,
            "vector_store_written": "faiss only (no Qdrant)",
            "text": f"SciFact-vocabulary words by SciFact frequency; {TEXT_WORDS} words per text",
            "vectors": faiss_scale.Mixture().describe().split("; queries")[0]
            + ", seeded by a hash of the passage text",
            "queries": f"{QUERY_WORDS} distinct content words, frequency**{QUERY_FLATTEN}",
            "seed": args.seed,
            "workers": workers,
        },
        **serve_bench.run_context(loadavg_before),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
