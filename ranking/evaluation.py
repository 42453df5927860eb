"""Evaluation on BEIR-format data: readers, document-level aggregation, metrics, percentiles.

Pure apart from reading files: the composition (ingest into a throwaway data dir, run the
pipeline, build the report) lives in `service.evaluate`.

Relevance follows ranx (and trec_eval): a judgement with score >= 1 is relevant, graded scores
are the gains of nDCG (linear, Järvelin & Kekäläinen), and a score of 0 or below is a judged
non-relevant document. A query whose judgements are all <= 0 stays in the run and scores 0 on
every metric, as it does in trec_eval; it is not silently dropped, so the query count in a
report is the number of queries in the qrels split.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np

from contracts import InvalidInput

# The figures the README and DESIGN.md report; ranx metric names.
METRICS = ("ndcg@10", "recall@100", "mrr@10")
# Recall@100 needs 100 documents per query; more would not change any reported metric.
DOCUMENT_DEPTH = 100


class BeirDocument(msgspec.Struct, frozen=True):
    """One corpus.jsonl line. Unknown fields (`metadata`, `paragraph_id`, ...) are ignored."""

    id: str | int = msgspec.field(name="_id")
    title: str | None = ""
    text: str | None = ""


class _BeirQuery(msgspec.Struct, frozen=True):
    id: str | int = msgspec.field(name="_id")
    text: str = ""


@dataclass(frozen=True, slots=True)
class BeirCollection:
    """A BEIR folder reduced to what one evaluation needs: the judged queries of one split."""

    root: Path
    split: str
    corpus_path: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def _jsonl(path: Path, type_: type[msgspec.Struct]) -> Iterator[tuple[str, msgspec.Struct]]:
    decoder = msgspec.json.Decoder(type_)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                yield f"{path.name}:{number}", decoder.decode(raw)
            except msgspec.DecodeError as exc:
                raise InvalidInput(f"{path}:{number}: {exc}") from None


def read_corpus(path: Path) -> Iterator[BeirDocument]:
    """The documents of corpus.jsonl in file order; ids as strings, missing title/text as ""."""
    for _, item in _jsonl(path, BeirDocument):
        assert isinstance(item, BeirDocument)
        yield BeirDocument(str(item.id), item.title or "", item.text or "")


def read_queries(path: Path) -> dict[str, str]:
    """Query id -> text from queries.jsonl."""
    queries: dict[str, str] = {}
    for _, item in _jsonl(path, _BeirQuery):
        assert isinstance(item, _BeirQuery)
        queries[str(item.id)] = item.text
    return queries


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Query id -> {document id: score} from a qrels TSV (`query-id`, `corpus-id`, `score`).

    The header line is skipped (BEIR writes one; a first line whose score is not a number is
    taken as it). Rows with score 0 are kept: they are judged non-relevant, and they keep their
    query in the judged set. A pair judged twice keeps its highest score.
    """
    qrels: dict[str, dict[str, int]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 3:
                raise InvalidInput(
                    f"{path}:{number}: expected 3 tab-separated columns "
                    f"(query-id, corpus-id, score), got {len(row)}"
                )
            query_id, doc_id, raw_score = (cell.strip() for cell in row)
            try:
                # Some qrels write "1.0"; ranx wants integer grades.
                score = int(float(raw_score))
            except ValueError:
                if number == 1:
                    continue  # the header
                raise InvalidInput(
                    f"{path}:{number}: score {raw_score!r} is not a number"
                ) from None
            judged = qrels.setdefault(query_id, {})
            judged[doc_id] = max(score, judged.get(doc_id, score))
    return qrels


def load_beir(root: Path, split: str = "test", queries: Path | None = None) -> BeirCollection:
    """Check a BEIR folder and read its queries and the qrels of `split`.

    Only queries judged in `split` are kept: the others have no answer to score against (and on
    SciFact, queries.jsonl mixes train and test queries). `queries` reads the query texts from
    another queries.jsonl whose ids are the qrels' (XQuAD-R shares query ids across languages,
    so one language's questions can be scored against another's corpus and judgements).
    """
    corpus = root / "corpus.jsonl"
    queries_path = root / "queries.jsonl" if queries is None else queries
    qrels_path = root / "qrels" / f"{split}.tsv"
    for required in (corpus, queries_path, qrels_path):
        if not required.is_file():
            raise InvalidInput(
                f"{required} does not exist: a BEIR folder holds corpus.jsonl, queries.jsonl "
                f"and qrels/<split>.tsv"
            )
    qrels = read_qrels(qrels_path)
    if not qrels:
        raise InvalidInput(f"{qrels_path} judges no queries")
    all_queries = read_queries(queries_path)
    unknown = sorted(set(qrels) - set(all_queries))
    if unknown:
        raise InvalidInput(
            f"{qrels_path} judges {len(unknown)} queries missing from {queries_path} "
            f"(first: {unknown[:5]})"
        )
    judged = {query_id: all_queries[query_id] for query_id in sorted(qrels, key=_natural)}
    return BeirCollection(root, split, corpus, judged, qrels)


def _natural(identifier: str) -> tuple[int, int | str]:
    """Numeric ids in numeric order (1, 2, 10), then the rest: reports list queries stably."""
    return (0, int(identifier)) if identifier.isdigit() else (1, identifier)


def documents_by_best_chunk(
    ranked_chunks: Sequence[str],
    document_of: Mapping[str, str],
    depth: int = DOCUMENT_DEPTH,
) -> list[str]:
    """Documents in the order of their best-ranked chunk, at most `depth` of them.

    `ranked_chunks` is best first, so a document's first chunk is its best one: this is
    max-score aggregation without comparing scores. Scores cannot be compared here anyway: after
    a rerank the head carries cross-encoder scores and the tail RRF scores, and the pipeline's
    order is the only ranking it promises. Chunks with no document (deleted since) are dropped.
    """
    documents: list[str] = []
    seen: set[str] = set()
    for chunk_id in ranked_chunks:
        document = document_of.get(chunk_id)
        if document is None or document in seen:
            continue
        seen.add(document)
        documents.append(document)
        if len(documents) == depth:
            break
    return documents


def ranx_run(rankings: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    """Ranked document lists as a ranx run dict, with scores that encode the rank.

    ranx sorts a run by score, and its order among equal scores is not ours; a strictly
    decreasing score per rank makes ranx see exactly the pipeline's order.
    """
    return {
        query_id: {doc: float(len(docs) - rank) for rank, doc in enumerate(docs)}
        for query_id, docs in rankings.items()
    }


def score_rankings(
    qrels: Mapping[str, Mapping[str, int]],
    rankings: Mapping[str, Sequence[str]],
    metrics: Sequence[str] = METRICS,
) -> dict[str, float]:
    """Mean of each ranx metric over every judged query; a query with no ranking scores 0."""
    from ranx import Qrels, Run, evaluate  # numba start-up (~2 s) only when evaluating

    judged = {query_id: dict(docs) for query_id, docs in qrels.items()}
    run = ranx_run({query_id: rankings.get(query_id, []) for query_id in judged})
    with warnings.catch_warnings():
        # ranx's numba kernels warn about an internal uint64 -> int64 cast; not ours to fix.
        warnings.simplefilter("ignore")
        scores = evaluate(
            Qrels.from_dict(judged), Run.from_dict(run), list(metrics), return_mean=True
        )
    if len(metrics) == 1:
        return {metrics[0]: float(scores)}
    return {metric: float(scores[metric]) for metric in metrics}


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolated linearly between ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))
