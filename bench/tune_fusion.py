"""Fit the hybrid fusion on SciFact *train* qrels only, and report the fit on SciFact test.

    .venv/bin/python bench/tune_fusion.py [--data ../shared/data/ir/scifact] [--work /tmp/fs-tune]

Ingests the corpus with the real ingest code into `--work` (kept, so reruns skip embedding),
takes the dense (FAISS) candidates once per query and the BM25 candidates once per BM25 setting
(title weight, k1, b), then grid-searches the fusion (score fusion's dense weight; RRF's k and
dense weight) on train nDCG@10 (ranx), at the document level (a document scores as its best
chunk). Test figures are printed for the record only; nothing is chosen on them. The chosen values
are the defaults in ranking/fusion.py and ranking/lexical.py.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from ranx import Qrels, Run, evaluate

from contracts import Licence, Owner
from ingest.run import ingest_source
from ranking.fusion import reciprocal_rank_fusion, score_fusion
from ranking.lexical import BM25Index, LexicalDoc
from service.runtime import open_runtime
from service.settings import load_settings

DEPTH = 300
LICENCE = Licence(
    id="tune",
    name="tune",
    currency="USD",
    price_per_hit_micros=0,
    owner_share_bps=0,
    snippet_cap_chars=100_000,
    attribution="tune",
)


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    with path.open() as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            qrels[row["query-id"]][row["corpus-id"]] = int(row["score"])
    return dict(qrels)


def doc_run(ranked: list[tuple[str, float]], doc_of: dict[str, str]) -> dict[str, float]:
    best: dict[str, float] = {}
    for chunk_id, score in ranked:
        doc = doc_of[chunk_id]
        if doc not in best or score > best[doc]:
            best[doc] = score
    return dict(sorted(best.items(), key=lambda kv: -kv[1])[:100])


def ndcg(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> float:
    return float(evaluate(Qrels(qrels), Run(run), "ndcg@10"))


async def main(data: Path, work: Path) -> None:
    corpus_jsonl = work / "corpus.jsonl"
    work.mkdir(parents=True, exist_ok=True)
    if not corpus_jsonl.exists():
        with (data / "corpus.jsonl").open() as src, corpus_jsonl.open("w") as dst:
            for line in src:
                doc = json.loads(line)
                if doc["text"].strip():
                    dst.write(
                        json.dumps({"id": doc["_id"], "title": doc["title"], "text": doc["text"]})
                        + "\n"
                    )
    queries = {q["_id"]: q["text"] for q in map(json.loads, (data / "queries.jsonl").open())}
    train, test = read_qrels(data / "qrels" / "train.tsv"), read_qrels(data / "qrels" / "test.tsv")
    settings = load_settings({"FAIRSHARE_DATA_DIR": str(work / "data")})
    async with open_runtime(settings, with_qdrant=False, with_reranker=False) as rt:
        await rt.catalog.add_owner(Owner(id="tune", name="tune"))
        await rt.catalog.add_dataset(
            dataset_id="scifact", owner_id="tune", name="scifact", description="", licence=LICENCE
        )
        await ingest_source(
            corpus_jsonl,
            dataset_id="scifact",
            catalog=rt.catalog,
            embedder=rt.embedder,
            vector_indexes=rt.vector_indexes(),
            lexical=rt.lexical,
            lock_dir=rt.lock_dir,
        )
        gens = await rt.catalog.generations()
        chunks = await rt.catalog.chunk_texts("scifact")
        doc_of = {c.chunk_id: c.document_id for c in chunks}
        docs = [LexicalDoc(c.chunk_id, c.title, c.text, c.language) for c in chunks]
        lexicals = {}
        for weight, k1, b in itertools.product((1, 2, 3), (0.9, 1.2, 1.5), (0.5, 0.75)):
            index = BM25Index(work / f"bm25-t{weight}-k{k1}-b{b}", title_weight=weight, k1=k1, b=b)
            index.build("scifact", gens["scifact"], docs)
            lexicals[(weight, k1, b)] = index
        wanted = sorted(set(train) | set(test))
        vectors = rt.embedder.embed_queries([queries[q] for q in wanted])
        dense = {q: rt.faiss.search(v, DEPTH, gens) for q, v in zip(wanted, vectors, strict=True)}
        bm25 = {
            w: {q: ix.search(queries[q], DEPTH, gens) for q in wanted} for w, ix in lexicals.items()
        }

    def score(qrels: dict[str, dict[str, int]], fuse) -> float:  # type: ignore[no-untyped-def]
        return ndcg({q: doc_run(fuse(q), doc_of) for q in qrels}, qrels)

    def report(label: str, fuse) -> None:  # type: ignore[no-untyped-def]
        print(f"{label:<40} train {score(train, fuse):.4f}  test {score(test, fuse):.4f}")

    report("dense only", lambda q: dense[q])
    for key, lists in bm25.items():
        report(f"bm25 (title weight, k1, b) = {key}", lambda q, lists=lists: lists[q])
    results: list[tuple[float, str, Callable[..., list[tuple[str, float]]]]] = []
    for key, lists in bm25.items():
        for dw in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):

            def fused(q: str, lists=lists, dw: float = dw) -> list[tuple[str, float]]:  # type: ignore[no-untyped-def]
                return score_fusion(dense[q], lists[q], dense_weight=dw)

            results.append((score(train, fused), f"score  bm25{key} dense={dw}", fused))
        for k, dw in itertools.product((5, 10, 60), (0.5, 1.0, 1.5)):

            def rrf(q: str, lists=lists, k: int = k, dw: float = dw) -> list[tuple[str, float]]:  # type: ignore[no-untyped-def]
                ranked = [[c for c, _ in dense[q]], [c for c, _ in lists[q]]]
                return reciprocal_rank_fusion(ranked, weights=[dw, 1.0], k=k)

            results.append((score(train, rrf), f"rrf    bm25{key} k={k} dense={dw}", rrf))
    results.sort(key=lambda r: -r[0])
    print("\nbest fusion settings on SciFact train (bm25 = (title weight, k1, b)):")
    for _, label, fuse in results[:10]:
        report(label, fuse)
    for _, label, fuse in results:
        if label == "rrf    bm25(1, 1.5, 0.75) k=60 dense=1.0":
            report("(plain RRF baseline) " + label, fuse)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/ir/scifact"
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/fs-tune"))
    args = parser.parse_args()
    asyncio.run(main(args.data, args.work))
