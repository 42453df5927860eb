"""Embedder backends on SciFact: does int8 move nDCG@10, and what does each cost?

    .venv/bin/python bench/embedder_backends.py [--data ../shared/data/ir/scifact] [--split test]

Embeds every SciFact document (title + abstract, truncated at the model's 256 tokens, as the
pipeline's chunks are) with each backend (`torch`, `onnx`, `onnx-int8`), searches the test
queries with exact inner product (FAISS flat) and scores dense nDCG@10 with ranx. Also times
passage throughput over the corpus and single-query latency. Writes
bench/out/embedder_backends.json. The dense-only figure isolates the embeddings: fusion and
reranking would only blur a difference between backends.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from ranx import Qrels, Run, evaluate

from ranking.embed_onnx import OnnxEmbedder
from ranking.embedder import EMBEDDER_BACKENDS, Embedder, SentenceEmbedder

ROOT = Path(__file__).resolve().parent.parent


def load(
    data: Path, split: str
) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    corpus = {}
    for line in (data / "corpus.jsonl").read_text().splitlines():
        row = json.loads(line)
        corpus[row["_id"]] = f"{row.get('title', '')}\n{row['text']}"
    qrels: dict[str, dict[str, int]] = {}
    for line in (data / "qrels" / f"{split}.tsv").read_text().splitlines()[1:]:
        qid, did, score = line.split("\t")
        qrels.setdefault(qid, {})[did] = int(score)
    queries = {}
    for line in (data / "queries.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["_id"] in qrels:
            queries[row["_id"]] = row["text"]
    return corpus, queries, qrels


def make(backend: str, cache: Path) -> Embedder:
    if backend == "torch":
        return SentenceEmbedder()
    return OnnxEmbedder(quantized=backend == "onnx-int8", cache_dir=cache)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/ir/scifact")
    parser.add_argument("--split", default="test")
    parser.add_argument("--backends", default=",".join(EMBEDDER_BACKENDS))
    args = parser.parse_args()
    corpus, queries, qrels = load(args.data, args.split)
    ids, texts = list(corpus), list(corpus.values())
    cache = Path(tempfile.mkdtemp(prefix="embedder-onnx-"))
    results: dict[str, Any] = {}
    for backend in args.backends.split(","):
        embedder = make(backend, cache)
        started = time.perf_counter()
        vectors = embedder.embed_passages(texts)
        passages_per_s = len(texts) / (time.perf_counter() - started)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        latencies = []
        run: dict[str, dict[str, float]] = {}
        for qid, text in queries.items():
            started = time.perf_counter()
            query = embedder.embed_queries([text])
            latencies.append((time.perf_counter() - started) * 1000)
            scores, rows = index.search(np.ascontiguousarray(query), 10)
            run[qid] = {ids[r]: float(s) for r, s in zip(rows[0], scores[0], strict=True)}
        ndcg = float(evaluate(Qrels(qrels), Run(run), "ndcg@10"))
        results[backend] = {
            "ndcg@10": round(ndcg, 4),
            "passages_per_s": round(passages_per_s, 1),
            "query_ms_p50": round(statistics.median(latencies), 2),
        }
        print(backend, results[backend], flush=True)
    fp32 = results.get("torch", {}).get("ndcg@10")
    lines = [
        "| backend | dense nDCG@10 | Δ vs torch fp32 | passages/s | query p50 ms |",
        "|---|---|---|---|---|",
    ]
    for backend, row in results.items():
        delta = "" if fp32 is None else f"{row['ndcg@10'] - fp32:+.4f}"
        lines.append(
            f"| {backend} | {row['ndcg@10']:.4f} | {delta} | {row['passages_per_s']} | "
            f"{row['query_ms_p50']} |"
        )
    print("\n".join(lines))
    print(
        f"\n{len(texts)} documents, {len(queries)} {args.split} queries; command: "
        ".venv/bin/python bench/embedder_backends.py"
    )
    out = ROOT / "bench" / "out" / "embedder_backends.json"
    out.write_text(json.dumps({"split": args.split, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
