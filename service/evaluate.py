"""`fairshare eval`: ingest a BEIR collection with the real ingest code, search it with the real
pipeline, and score the rankings with ranx.

Everything a user would run is exercised: the catalog, chunking, embedding, FAISS, Qdrant and
BM25 writers, and `SearchPipeline.search`, the call behind `POST /v1/search`. Only pricing,
selection and the ledger are left out: they decide what a customer is charged for, not the order.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec
from tqdm import tqdm

from contracts import InvalidInput, Licence, Owner
from ingest.run import IngestReport, ingest_source
from ranking.evaluation import (
    DOCUMENT_DEPTH,
    BeirCollection,
    documents_by_best_chunk,
    load_beir,
    percentile,
    read_corpus,
    score_rankings,
)
from ranking.pipeline import Mode
from service.runtime import Runtime, open_runtime
from service.settings import Settings

Stage = Literal["bm25", "dense", "hybrid", "rerank"]
STAGES: tuple[Stage, ...] = ("bm25", "dense", "hybrid", "rerank")
# Chunks taken from each retriever. Metrics are over documents, and a document may have several
# chunks among the candidates, so 100 chunks can hold fewer than the 100 documents Recall@100
# needs; 300 leaves room on SciFact (~1.7 chunks per abstract).
EVAL_CANDIDATE_DEPTH = 300
EVAL_OWNER = Owner(id="eval", name="Evaluation", email="", currency="USD")
# Free: evaluation searches never reach the ledger, but the catalog requires a licence.
EVAL_LICENCE = Licence(
    id="eval-no-charge",
    name="Evaluation, no charge",
    currency="USD",
    price_per_hit_micros=0,
    owner_share_bps=0,
    snippet_cap_chars=100_000,
    attribution="Evaluation corpus; not for serving.",
)
REPO_ROOT = Path(__file__).resolve().parent.parent


class StageScores(msgspec.Struct, frozen=True):
    ndcg_at_10: float = msgspec.field(name="ndcg@10")
    recall_at_100: float = msgspec.field(name="recall@100")
    mrr_at_10: float = msgspec.field(name="mrr@10")
    p50_ms: float = 0.0
    p95_ms: float = 0.0


class StageSkipped(msgspec.Struct, frozen=True):
    skipped: str


class ModelsInfo(msgspec.Struct, frozen=True):
    embedder: str
    reranker: str | None
    reranker_detail: str


class IndexInfo(msgspec.Struct, frozen=True):
    backend: str
    candidate_depth: int
    chunks: int
    documents: int
    ingest_seconds: float


class DataInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    path: str
    split: str
    queries: int
    corpus: int
    skipped_documents: int
    # Where the query texts came from when not the collection's own queries.jsonl (--queries);
    # left out of the report otherwise.
    queries_path: str | None = None


class EvalReport(msgspec.Struct, frozen=True):
    """The JSON `fairshare eval --out` writes; README "Evaluation" documents each field."""

    stages: dict[str, StageScores | StageSkipped]
    models: ModelsInfo
    index: IndexInfo
    data: DataInfo
    commit: str | None


@dataclass(frozen=True, slots=True)
class EvalOptions:
    data: Path
    split: str = "test"
    backend: str = "faiss"
    stages: tuple[Stage, ...] = STAGES
    # A data dir to ingest into and keep; None means a temporary one, removed afterwards.
    keep_data: Path | None = None
    progress: bool = True
    # Query texts from this queries.jsonl instead of the collection's own (same ids).
    queries: Path | None = None


@dataclass(frozen=True, slots=True)
class Evaluation:
    report: EvalReport
    ingest: IngestReport
    data_dir: Path


def parse_stages(text: str) -> tuple[Stage, ...]:
    """Parse "bm25,hybrid" into stages, in pipeline order; unknown names are InvalidInput."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in STAGES]
    if unknown or not names:
        raise InvalidInput(f"--stages takes a comma-separated subset of {', '.join(STAGES)}")
    return tuple(stage for stage in STAGES if stage in names)


def dataset_id_for(root: Path) -> str:
    """A catalog slug for the collection, so a kept data dir says what it holds."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", root.resolve().name.lower()).strip("-._")
    return f"eval-{slug or 'corpus'}"[:128]


def write_ingest_source(collection: BeirCollection, target: Path) -> tuple[int, int]:
    """Convert corpus.jsonl to the ingest JSONL format; return (corpus size, skipped).

    ingest's Document forbids unknown fields, so `_id` becomes `id` and metadata is dropped. A
    document with no text but a title is ingested with its title as its text: CACM has 1,617 such
    documents out of 3,204, 146 of them judged relevant, and dropping them would cap Recall far
    below what the collection allows. One with neither is skipped and counted.
    """
    corpus = skipped = 0
    with target.open("wb") as out:
        for document in read_corpus(collection.corpus_path):
            corpus += 1
            title, text = (document.title or "").strip(), document.text or ""
            if not text.strip():
                title, text = "", title
            if not text:
                skipped += 1
                continue
            record = {"id": document.id, "title": title, "text": text}
            out.write(msgspec.json.encode(record) + b"\n")
    return corpus, skipped


def git_commit() -> str | None:
    """HEAD of the checkout this code runs from; None outside a git checkout."""
    try:
        found = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() or None


@contextmanager
def _data_dir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="fairshare-eval-", ignore_cleanup_errors=True) as tmp:
        yield Path(tmp)


async def evaluate_collection(settings: Settings, options: EvalOptions) -> Evaluation:
    """Ingest `options.data` into a (throwaway or kept) data dir, run each stage over every
    judged query, and score the document rankings.

    Re-running with the same `keep_data` re-ingests nothing (ingest is idempotent), so one
    ingest can be scored under both backends.
    """
    collection = load_beir(options.data, options.split, options.queries)
    # Read before the run, not after: the code being measured is what was checked out when this
    # process started, and a long run can outlive a commit.
    commit = git_commit()
    with _data_dir(options.keep_data) as data_dir:
        eval_settings = settings.with_(
            data_dir=data_dir,
            # Never the configured PostgreSQL or Qdrant server: an evaluation must not write
            # a throwaway corpus into the catalog or vectors that production serves from.
            database_url="",
            qdrant_url="",
            vector_backend=options.backend,
            candidate_depth=max(settings.candidate_depth, EVAL_CANDIDATE_DEPTH),
        )
        # Qdrant is always written, so a kept data dir can be scored under either backend.
        async with open_runtime(
            eval_settings, with_qdrant=True, with_reranker="rerank" in options.stages
        ) as runtime:
            dataset_id = dataset_id_for(options.data)
            started = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="fairshare-eval-src-") as src:
                source = Path(src) / "corpus.jsonl"
                corpus_size, empty = write_ingest_source(collection, source)
                ingest = await _ingest(runtime, dataset_id, source, options.progress)
            ingest_seconds = time.perf_counter() - started
            for error in ingest.errors[:20]:
                print(f"skipped document: {error}", file=sys.stderr)
            stages: dict[str, StageScores | StageSkipped] = {
                stage: await _run_stage(runtime, collection, dataset_id, stage, options.progress)
                for stage in options.stages
            }
            dataset = await runtime.catalog.get_dataset(dataset_id)
            reranker = runtime.reranker
        report = EvalReport(
            stages=stages,
            models=ModelsInfo(
                embedder=eval_settings.embedder_model,
                reranker=eval_settings.reranker_model if reranker.loaded else None,
                reranker_detail=reranker.detail,
            ),
            index=IndexInfo(
                backend=options.backend,
                candidate_depth=eval_settings.candidate_depth,
                chunks=dataset.chunk_count,
                documents=dataset.document_count,
                ingest_seconds=round(ingest_seconds, 2),
            ),
            data=DataInfo(
                path=str(options.data),
                split=options.split,
                queries=len(collection.queries),
                corpus=corpus_size,
                skipped_documents=empty + len(ingest.errors),
                queries_path=None if options.queries is None else str(options.queries),
            ),
            commit=commit,
        )
        return Evaluation(report, ingest, data_dir)


async def _ingest(runtime: Runtime, dataset_id: str, source: Path, progress: bool) -> IngestReport:
    await runtime.catalog.add_owner(EVAL_OWNER)
    await runtime.catalog.add_dataset(
        dataset_id=dataset_id,
        owner_id=EVAL_OWNER.id,
        name=f"Evaluation: {dataset_id}",
        description="A BEIR collection ingested by `fairshare eval`.",
        licence=EVAL_LICENCE,
    )
    # sync: a kept data dir that held an older version of this corpus must not keep its extras.
    return await ingest_source(
        source,
        dataset_id=dataset_id,
        catalog=runtime.catalog,
        embedder=runtime.embedder,
        vector_indexes=runtime.vector_indexes(),
        lexical=runtime.lexical,
        lock_dir=runtime.lock_dir,
        sync=True,
        progress=progress,
    )


async def _run_stage(
    runtime: Runtime, collection: BeirCollection, dataset_id: str, stage: Stage, progress: bool
) -> StageScores | StageSkipped:
    if stage == "rerank" and not runtime.reranker.loaded:
        return StageSkipped(runtime.reranker.detail)
    mode: Mode = "hybrid" if stage == "rerank" else stage
    # Only this collection: a kept data dir may hold other evaluated collections too.
    generations = {dataset_id: (await runtime.catalog.generations())[dataset_id]}

    async def texts(ids: Sequence[str]) -> Mapping[str, str]:
        passages = await runtime.catalog.get_passages(ids)
        return {cid: f"{p.title}\n{p.text}" for cid, p in passages.items()}

    async def search(query: str) -> list[str]:
        ranking = await runtime.pipeline.search(
            query, generations=generations, rerank=stage == "rerank", texts=texts, mode=mode
        )
        return [item.chunk_id for item in ranking.items]

    # Untimed warm-up: the first search loads the index files and models' lazy state, which
    # is a start-up cost, not the latency of a query.
    await search(next(iter(collection.queries.values())))
    chunk_rankings: dict[str, list[str]] = {}
    latencies: list[float] = []
    for query_id, query in tqdm(
        collection.queries.items(),
        desc=stage,
        unit="query",
        disable=not progress,
        file=sys.stderr,
    ):
        started = time.perf_counter()
        chunk_rankings[query_id] = await search(query)
        latencies.append((time.perf_counter() - started) * 1000)
    document_of = await chunk_documents(runtime, chunk_rankings.values())
    rankings = {
        query_id: documents_by_best_chunk(chunks, document_of, DOCUMENT_DEPTH)
        for query_id, chunks in chunk_rankings.items()
    }
    scores = score_rankings(collection.qrels, rankings)
    return StageScores(
        ndcg_at_10=round(scores["ndcg@10"], 4),
        recall_at_100=round(scores["recall@100"], 4),
        mrr_at_10=round(scores["mrr@10"], 4),
        p50_ms=round(percentile(latencies, 50), 2),
        p95_ms=round(percentile(latencies, 95), 2),
    )


async def chunk_documents(runtime: Runtime, rankings: Iterable[Sequence[str]]) -> dict[str, str]:
    """Chunk id -> document id for every chunk in `rankings`, from the catalog's passages (a
    stable shape, unlike the index-rebuild rows of `chunk_texts`)."""
    wanted = list(dict.fromkeys(chunk_id for chunks in rankings for chunk_id in chunks))
    passages = await runtime.catalog.get_passages(wanted)
    return {chunk_id: passage.document_id for chunk_id, passage in passages.items()}


def report_json(report: EvalReport) -> bytes:
    return msgspec.json.format(msgspec.json.encode(report)) + b"\n"


def format_table(report: EvalReport) -> str:
    """The report as the table `fairshare eval` prints."""
    header = f"{'stage':<8} {'nDCG@10':>8} {'R@100':>8} {'MRR@10':>8} {'p50 ms':>8} {'p95 ms':>8}"
    lines = [header, "-" * len(header)]
    for stage, result in report.stages.items():
        if isinstance(result, StageSkipped):
            lines.append(f"{stage:<8} skipped: {result.skipped}")
            continue
        lines.append(
            f"{stage:<8} {result.ndcg_at_10:>8.4f} {result.recall_at_100:>8.4f} "
            f"{result.mrr_at_10:>8.4f} {result.p50_ms:>8.1f} {result.p95_ms:>8.1f}"
        )
    data, index = report.data, report.index
    if data.queries_path is not None:
        lines.append(f"queries from {data.queries_path}")
    lines.append(
        f"{data.queries} queries ({data.split}), {index.documents} documents "
        f"({data.skipped_documents} skipped) in {index.chunks} chunks, backend {index.backend}, "
        f"candidate depth {index.candidate_depth}, ingest {index.ingest_seconds:.1f} s, "
        f"commit {(report.commit or 'unknown')[:12]}"
    )
    return "\n".join(lines)
