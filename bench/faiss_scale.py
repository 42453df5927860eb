"""FAISS at scale: exact vs the size-chosen index on clustered synthetic vectors.

    .venv/bin/python bench/faiss_scale.py [--n 1000000] [--dim 384] [--queries 1000] [--seed 0]

Builds both indexes with `ranking.faiss_build.build_index` (the function `FaissIndex.prepare`
calls), writes each to disk and reads it back through `configure_for_search` (what a serving
`FaissIndex` does), then times single-query k=10 searches, one query at a time on one thread as
the API does, and measures recall@10 against exact search. Also prints, for smaller sizes, exact
latency (the basis of `EXACT_THRESHOLD`) and the size-chosen index's recall (the basis of
`IVF_SCAN_VECTORS`), and an nprobe sweep at full size; `--hnsw` adds an HNSW comparison built
here, outside the service's code path. Writes bench/out/faiss_scale.json.

Random unit vectors have no neighbourhood structure, so they say little about HNSW/IVF recall on
embeddings; the data here is a Gaussian mixture (see `Mixture`) and queries are fresh draws from
the same mixture, not database rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from ranking.faiss_build import (
    EXACT_THRESHOLD,
    build_index,
    configure_for_search,
    describe,
    one_thread_per_query,
)

K = 10
OUT = Path(__file__).parent / "out" / "faiss_scale.json"


@dataclass(frozen=True)
class Mixture:
    """Gaussian clusters on the unit sphere, shaped a little like sentence embeddings.

    Each cluster: a random unit centre, plus a spread of norm ~`spread` inside its own random
    `rank`-dimensional subspace (embeddings vary along few directions locally), plus isotropic noise
    of norm ~`noise`; the sum is L2-normalised. Cluster sizes are lognormal (some topics are large).
    With the defaults a query's nearest neighbour has cosine ≈ 0.55 and its 10th ≈ 0.44.
    """

    clusters: int = 1000
    rank: int = 32
    spread: float = 1.5
    noise: float = 0.7

    def describe(self) -> str:
        return (
            f"mixture of {self.clusters} Gaussian clusters (unit centres; spread {self.spread} in "
            f"a random {self.rank}-d subspace per cluster; isotropic noise {self.noise}; lognormal "
            "sizes), L2-normalised; queries drawn from the same mixture, not from the database"
        )

    def sampler(self, dim: int, seed: int) -> _Sampler:
        return _Sampler(self, dim, np.random.default_rng(seed))


class _Sampler:
    def __init__(self, mix: Mixture, dim: int, rng: np.random.Generator) -> None:
        self.mix, self.dim, self.rng = mix, dim, rng
        centres = rng.standard_normal((mix.clusters, dim), dtype=np.float32)
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        # Rows of norm ~1, so a standard-normal coefficient vector scaled by spread/√rank gives
        # an offset of norm ~spread.
        self.bases = rng.standard_normal((mix.clusters, mix.rank, dim), dtype=np.float32)
        self.bases /= np.sqrt(dim)
        weights = rng.lognormal(0.0, 1.0, mix.clusters)
        self.weights = weights / weights.sum()

    def draw(self, m: int, chunk: int = 100_000) -> NDArray[np.float32]:
        out = np.empty((m, self.dim), dtype=np.float32)
        for start in range(0, m, chunk):  # chunks keep the temporaries ~150 MB each
            rows = out[start : start + chunk]
            labels = self.rng.choice(self.mix.clusters, len(rows), p=self.weights)
            rows[:] = self.rng.standard_normal(rows.shape, dtype=np.float32)
            rows *= self.mix.noise / np.sqrt(self.dim)
            rows += self.centres[labels]
            coeffs = self.rng.standard_normal((len(rows), self.mix.rank), dtype=np.float32)
            coeffs *= self.mix.spread / np.sqrt(self.mix.rank)
            for c in np.unique(labels):
                members = np.flatnonzero(labels == c)
                rows[members] += coeffs[members] @ self.bases[c]
            rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        return out


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def single_query_ms(index: faiss.Index, queries: NDArray[np.float32]) -> NDArray[np.float64]:
    """Wall time per k=10 search, one query per call on one thread, as FaissIndex searches."""
    times = np.empty(len(queries))
    with one_thread_per_query():
        for i in range(len(queries)):
            query = queries[i : i + 1]
            started = time.perf_counter()
            index.search(query, K)
            times[i] = (time.perf_counter() - started) * 1000
    return times


def recall_at_k(found: NDArray[np.int64], truth: NDArray[np.int64]) -> float:
    hits = sum(len(set(f) & set(t)) for f, t in zip(found.tolist(), truth.tolist(), strict=True))
    return hits / truth.size


def timing(ms: NDArray[np.float64]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}


def build_row(
    vectors: NDArray[np.float32], exact_threshold: int, tmp: Path
) -> tuple[dict[str, Any], faiss.Index]:
    """Build as `FaissIndex.prepare` does, write it, and read it back as a server would."""
    rss_before = rss_bytes()
    started = time.perf_counter()
    index = build_index(vectors, exact_threshold=exact_threshold)
    build_s = time.perf_counter() - started
    rss_delta = rss_bytes() - rss_before
    path = tmp / "index.faiss"
    faiss.write_index(index, str(path))
    size = path.stat().st_size
    del index  # never two copies in memory: at 1M the HNSW index is ~1.8 GB
    loaded = configure_for_search(faiss.read_index(str(path)))
    path.unlink()
    row = {
        "index": describe(loaded),
        "build_s": build_s,
        "index_bytes": size,
        "rss_delta_bytes": rss_delta,
    }
    return row, loaded


def hnsw_rows(
    vectors: NDArray[np.float32],
    queries: NDArray[np.float32],
    truth: NDArray[np.int64],
    m: int,
    ef_construction: int,
    ef_searches: list[int],
) -> list[dict[str, Any]]:
    """HNSWFlat, for comparison only; the service never builds this."""
    index = faiss.IndexHNSWFlat(vectors.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    started = time.perf_counter()
    index.add(vectors)
    build_s = time.perf_counter() - started
    rows = []
    for ef in ef_searches:
        index.hnsw.efSearch = ef
        rows.append(
            {
                "index": f"HNSWFlat(M={m}, efConstruction={ef_construction}, efSearch={ef})",
                "build_s": build_s,
                "recall_at_10": recall_at_k(index.search(queries, K)[1], truth),
                **timing(single_query_ms(index, queries)),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="OpenMP threads for builds"
    )
    parser.add_argument(
        "--exact-queries", type=int, default=200, help="single-query timings of exact search"
    )
    parser.add_argument("--sizes", default="10000,25000,50000,100000,250000")
    parser.add_argument("--nprobe-sweep", default="8,16,32,64,128,256")
    parser.add_argument("--hnsw", action="store_true", help="also build HNSW for comparison")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--hnsw-ef-construction", type=int, default=80)
    parser.add_argument("--ef-sweep", default="32,64,128,256")
    args = parser.parse_args()
    command = " ".join([".venv/bin/python", "bench/faiss_scale.py", *sys.argv[1:]])
    faiss.omp_set_num_threads(args.threads)
    mix = Mixture()

    print(f"$ {command}")
    print(
        f"faiss {faiss.__version__}, builds on {args.threads} OpenMP threads, searches on 1, "
        f"{os.cpu_count()} cores, "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )
    print(f"data: {args.n:,} x {args.dim} float32, {mix.describe()}; seed {args.seed}")
    started = time.perf_counter()
    sampler = mix.sampler(args.dim, args.seed)
    vectors = sampler.draw(args.n)
    queries = sampler.draw(args.queries)
    print(f"generated in {time.perf_counter() - started:.0f} s", flush=True)
    exact_queries = queries[: args.exact_queries]
    result: dict[str, Any] = {
        "command": command,
        "faiss": faiss.__version__,
        "threads": args.threads,
        "data": mix.describe(),
        "n": args.n,
        "dim": args.dim,
        "queries": args.queries,
        "seed": args.seed,
        "exact_threshold": EXACT_THRESHOLD,
    }

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        print("\nby size: exact latency; above the threshold, the size-chosen index's recall@10")
        by_size = []
        for size in (int(s) for s in args.sizes.split(",") if int(s) < args.n):
            exact = build_index(vectors[:size], exact_threshold=size + 1)
            row: dict[str, Any] = {
                "n": size,
                "exact": timing(single_query_ms(exact, exact_queries)),
            }
            line = f"  {size:>9,}  exact p50 {row['exact']['p50_ms']:6.2f} ms"
            truth = exact.search(queries, K)[1]
            del exact
            if size >= EXACT_THRESHOLD:
                started = time.perf_counter()
                chosen = build_index(vectors[:size])
                row["chosen"] = {
                    "index": describe(chosen),
                    "build_s": time.perf_counter() - started,
                    "recall_at_10": recall_at_k(chosen.search(queries, K)[1], truth),
                    **timing(single_query_ms(chosen, queries)),
                }
                del chosen
                c = row["chosen"]
                line += (
                    f"   {c['index']} build {c['build_s']:5.1f} s, p50 {c['p50_ms']:5.2f} ms, "
                    f"recall@10 {c['recall_at_10']:.4f}"
                )
            by_size.append(row)
            print(line, flush=True)
        result["by_size"] = by_size

        exact_row, exact = build_row(vectors, args.n + 1, tmp)
        truth = exact.search(queries, K)[1]
        exact_row.update(recall_at_10=1.0, **timing(single_query_ms(exact, exact_queries)))
        del exact
        print(f"exact at {args.n:,} done", flush=True)

        chosen_row, chosen = build_row(vectors, EXACT_THRESHOLD, tmp)
        chosen_row.update(
            recall_at_10=recall_at_k(chosen.search(queries, K)[1], truth),
            **timing(single_query_ms(chosen, queries)),
        )
        print(f"size-chosen index at {args.n:,} done", flush=True)

        sweep = []
        if isinstance(chosen, faiss.IndexIVF):
            chosen_nprobe = chosen.nprobe
            for nprobe in (int(p) for p in args.nprobe_sweep.split(",")):
                chosen.nprobe = nprobe
                sweep.append(
                    {
                        "index": describe(chosen),
                        "recall_at_10": recall_at_k(chosen.search(queries, K)[1], truth),
                        **timing(single_query_ms(chosen, queries)),
                    }
                )
            chosen.nprobe = chosen_nprobe
        del chosen
    result["rows"], result["sweep"] = [exact_row, chosen_row], sweep
    report(result, len(exact_queries))
    if args.hnsw:  # last, and after the report, so a slow HNSW build loses nothing
        efs = [int(e) for e in args.ef_sweep.split(",")]
        m, efc = args.hnsw_m, args.hnsw_ef_construction
        result["sweep"] += hnsw_rows(vectors, queries, truth, m, efc, efs)
        report(result, len(exact_queries))


def report(result: dict[str, Any], exact_queries: int) -> None:
    rows, sweep = result["rows"], result["sweep"]
    mb = 1024 * 1024
    print(
        f"\n{'index':<52} {'build s':>8} {'file MB':>8} {'RSS Δ MB':>9} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'recall@10':>9}"
    )
    for row in rows:
        print(
            f"{row['index']:<52} {row['build_s']:>8.1f} {row['index_bytes'] / mb:>8.0f} "
            f"{row['rss_delta_bytes'] / mb:>9.0f} {row['p50_ms']:>8.3f} {row['p95_ms']:>8.3f} "
            f"{row['recall_at_10']:>9.4f}"
        )
    print(
        f"(exact latency over the first {exact_queries} queries; others over {result['queries']})"
    )
    if sweep:
        print(
            f"\n{'parameter sweep':<52} {'build s':>8} {'p50 ms':>8} {'p95 ms':>8} {'recall@10':>9}"
        )
        for row in sweep:
            build = f"{row['build_s']:>8.1f}" if "build_s" in row else f"{'':>8}"
            print(
                f"{row['index']:<52} {build} {row['p50_ms']:>8.3f} {row['p95_ms']:>8.3f} "
                f"{row['recall_at_10']:>9.4f}"
            )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {OUT.relative_to(Path.cwd()) if OUT.is_relative_to(Path.cwd()) else OUT}")


if __name__ == "__main__":
    main()
