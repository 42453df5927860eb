"""Cross-encoder speed per backend (torch, onnx, onnx-int8) on the same 50 candidates.

    .venv/bin/python bench/rerank_speed.py [--data ../shared/data/ir/scifact] [--repeats 5]

The model is a cross-encoder built from the packaged all-MiniLM-L6-v2 weights with a fresh,
seeded scoring head (as tests/conftest.py builds it): it has the production reranker's
architecture (MiniLM-L6, 384 wide), so it stands in for its *speed*. Its scores mean nothing, so
the agreement columns compare each ONNX backend with torch on the same pairs; they are not a
quality figure. The candidates are the first 50 SciFact documents (title + abstract) against one
SciFact test query; pairs are truncated at RERANK_MAX_LENGTH as in the service.

Per backend: load time on a fresh copy of the model directory (for onnx-int8 that includes the
fp32 export and its quantization) and again once the export exists; pairs/s at several batch
sizes (median of `--repeats` timed runs after one warm-up, straight to the backend, so the score
cache plays no part); and pairs/s for the same 50 candidates when they are all cache hits.
Output: a table on stdout and bench/out/rerank_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import numpy as np

from ranking.embedder import quiet_model_loading, resolve_model
from ranking.rerank import (
    BACKENDS,
    RERANK_BATCH,
    RERANK_MAX_LENGTH,
    CrossEncoderReranker,
    load_reranker,
)
from ranking.rerank_onnx import quantization_target

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "rerank_speed.json"
CANDIDATES = 50
BATCH_SIZES = (16, 32, 50)


def build_model(directory: Path) -> Path:
    quiet_model_loading()
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(1234)
    path = directory / "minilm-cross-encoder"
    CrossEncoder(resolve_model(None), num_labels=1, device="cpu").save(str(path))
    return path


def read_candidates(data: Path, query_id: str) -> tuple[str, list[tuple[str, str]]]:
    with (data / "queries.jsonl").open() as handle:
        queries = {q["_id"]: q["text"] for q in map(json.loads, handle)}
    candidates = []
    with (data / "corpus.jsonl").open() as handle:
        for line in handle:
            doc = json.loads(line)
            candidates.append((doc["_id"], f"{doc['title']}\n{doc['text']}"))
            if len(candidates) == CANDIDATES:
                break
    return queries[query_id], candidates


def mean_tokens(model: Path, query: str, candidates: list[tuple[str, str]]) -> float:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model))
    encoded = tokenizer(
        [query] * len(candidates),
        [text for _, text in candidates],
        truncation=True,
        max_length=RERANK_MAX_LENGTH,
    )
    return float(np.mean([len(ids) for ids in encoded["input_ids"]]))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks_a, ranks_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def round_robin(fns: Mapping[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per function. One warm-up each, then they take turns, so load from other
    processes on this shared machine falls on every backend alike."""
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - started)
    return {name: statistics.median(times) for name, times in runs.items()}


def load_backend(backend: str, source: Path) -> tuple[dict[str, object], CrossEncoderReranker]:
    # A fresh copy per backend, so "first load" includes that backend's whole export from scratch.
    model = source.parent / f"model-{backend}"
    shutil.copytree(source, model)
    cache_dir = source.parent / f"onnx-cache-{backend}"
    started = time.perf_counter()
    status = load_reranker(str(model), backend=backend, cache_dir=cache_dir)
    first_load = time.perf_counter() - started
    if not isinstance(status.reranker, CrossEncoderReranker):
        raise SystemExit(f"{backend}: {status.detail}")
    started = time.perf_counter()
    reloaded = load_reranker(str(model), backend=backend, cache_dir=cache_dir)
    reload = time.perf_counter() - started
    assert reloaded.loaded, reloaded.detail
    row: dict[str, object] = {
        "backend": backend,
        "detail": status.detail,
        "load_s_first": round(first_load, 2),
        "load_s_reuse": round(reload, 2),
    }
    return row, status.reranker


def measure(
    rerankers: dict[str, CrossEncoderReranker],
    rows: dict[str, dict[str, object]],
    query: str,
    candidates: list[tuple[str, str]],
    repeats: int,
) -> None:
    pairs = [(query, text) for _, text in candidates]
    scorers = {b: r.scorer for b, r in rerankers.items()}
    for batch in BATCH_SIZES:
        for scorer in scorers.values():
            scorer.batch_size = batch  # type: ignore[attr-defined]
        fns = {b: partial(scorer.score_pairs, pairs) for b, scorer in scorers.items()}
        for b, seconds in round_robin(fns, repeats).items():
            rows[b][f"pairs_per_s_b{batch}"] = round(len(pairs) / seconds, 1)
    for scorer in scorers.values():
        scorer.batch_size = RERANK_BATCH  # type: ignore[attr-defined]
    reference = np.array(scorers["torch"].score_pairs(pairs))
    for b, scorer in scorers.items():
        scores = np.array(scorer.score_pairs(pairs))
        rows[b]["max_abs_diff_vs_torch"] = float(np.abs(scores - reference).max())
        rows[b]["spearman_vs_torch"] = round(spearman(scores, reference), 4)
    # The cache: the same 50 (query, chunk) pairs again cost a lookup, not a model run.
    for r in rerankers.values():
        r.score(query, candidates)
    fns = {b: partial(r.score, query, candidates) for b, r in rerankers.items()}
    for b, seconds in round_robin(fns, repeats).items():
        rows[b]["pairs_per_s_cached"] = round(len(pairs) / seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", type=Path, default=ROOT.parent / "shared" / "data" / "ir" / "scifact"
    )
    parser.add_argument("--query-id", default="1", help="a SciFact test query id")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    command = " ".join([".venv/bin/python", "bench/rerank_speed.py", *sys.argv[1:]])

    import torch

    query, candidates = read_candidates(args.data, args.query_id)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(Path(tmp))
        tokens = mean_tokens(model, query, candidates)
        rows: dict[str, dict[str, object]] = {}
        rerankers: dict[str, CrossEncoderReranker] = {}
        for backend in BACKENDS:
            rows[backend], rerankers[backend] = load_backend(backend, model)
        load_timing = os.getloadavg()[0]
        measure(rerankers, rows, query, candidates, args.repeats)
    load_after = os.getloadavg()[0]

    report = {
        "command": command,
        "model": "all-MiniLM-L6-v2 encoder + seeded random head (speed stand-in, no quality)",
        "candidates": f"first {len(candidates)} SciFact documents (title + abstract)",
        "query": {"id": args.query_id, "text": query},
        "max_length": RERANK_MAX_LENGTH,
        "mean_tokens_per_pair": round(tokens, 1),
        "torch_threads": torch.get_num_threads(),
        "int8_preset": quantization_target().file_name,
        "cpu": platform.processor() or platform.machine(),
        "load_average_1m": {
            "before": round(load_before, 2),
            "timing_start": round(load_timing, 2),
            "after": round(load_after, 2),
        },
        "repeats": args.repeats,
        "backends": list(rows.values()),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")

    print(f"$ {command}")
    print(
        f"{len(candidates)} pairs, mean {tokens:.1f} tokens/pair (max_length {RERANK_MAX_LENGTH}), "
        f"{torch.get_num_threads()} threads; 1-min load average {load_before:.2f} before, "
        f"{load_timing:.2f} at timing start, {load_after:.2f} after (2 shared cores)"
    )
    print(
        f"{'backend':<10} {'load s':>7} {'reuse s':>8}"
        + "".join(f" {'b' + str(b) + ' p/s':>9}" for b in BATCH_SIZES)
        + f" {'cached p/s':>11} {'max|Δ| vs torch':>16} {'Spearman':>9}"
    )
    for row in rows.values():
        print(
            f"{row['backend']:<10} {row['load_s_first']:>7} {row['load_s_reuse']:>8}"
            + "".join(f" {row[f'pairs_per_s_b{b}']:>9}" for b in BATCH_SIZES)
            + f" {row['pairs_per_s_cached']:>11} {row['max_abs_diff_vs_torch']:>16.2e}"
            + f" {row['spearman_vs_torch']:>9}"
        )
    print(f"written to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
