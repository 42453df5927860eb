"""The resources a process holds: database engine, stores, models and indexes.

Opened once (by the app's lifespan, or by a CLI command) and handed to routes and commands.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import Dataset, Owner, Unavailable
from ingest.run import IngestReport, ingest_source
from ledger.catalog import CatalogStore
from ledger.db import make_engine, migrate
from ledger.hits import HitLedger
from ledger.keys import KeyStore
from ledger.payouts import Payouts, StepHook
from ledger.receipts import ReceiptSigner
from ranking.embedder import Embedder, SentenceEmbedder
from ranking.faiss_index import FaissIndex
from ranking.lexical import BM25Index
from ranking.pipeline import SearchPipeline
from ranking.qdrant_index import QdrantIndex, open_qdrant
from ranking.rerank import RerankerStatus, load_reranker
from ranking.vectors import VectorIndex
from service.observability import LEDGER_BATCH, ModelMetrics
from service.ratelimit import RateLimiter, open_rate_limiter
from service.settings import Settings

# Embedders are expensive to load (~5 s) and read-only once loaded; one per process per model
# and backend.
_EMBEDDERS: dict[tuple[str, str], Embedder] = {}


def shared_embedder(model: str, backend: str = "torch", cache_dir: Path | None = None) -> Embedder:
    if (model, backend) not in _EMBEDDERS:
        if backend == "torch":
            _EMBEDDERS[model, backend] = SentenceEmbedder(model)
        else:
            from ranking.embed_onnx import OnnxEmbedder  # onnxruntime loads only when asked for

            _EMBEDDERS[model, backend] = OnnxEmbedder(
                model, quantized=backend == "onnx-int8", cache_dir=cache_dir
            )
    return _EMBEDDERS[model, backend]


def size_model_threads(threads: int) -> None:
    """Threads per model call in this process. Both backends read torch's setting: torch itself,
    and ONNX Runtime sessions, which are opened with `torch.get_num_threads()` threads."""
    import torch  # already loaded by the embedder's package; imported here for this one call

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@dataclass(frozen=True, slots=True)
class CatalogSnapshot:
    """Datasets and owners as of one catalog state; rebuilt when any dataset's generation or
    licence changes, so pricing always uses the terms the catalog holds now.

    `state` (and so `generations`) holds only the datasets served; a revoked dataset is in
    `datasets` (with its `revoked_at`), so a request naming it can be told why it gets nothing,
    but never in `state`."""

    state: dict[str, tuple[int, str]]
    datasets: dict[str, Dataset]
    owners: dict[str, Owner]

    @property
    def generations(self) -> dict[str, int]:
        return {dataset_id: generation for dataset_id, (generation, _) in self.state.items()}


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    catalog: CatalogStore
    keys: KeyStore
    hits: HitLedger
    embedder: Embedder
    faiss: FaissIndex
    lexical: BM25Index
    qdrant: QdrantIndex | None
    reranker: RerankerStatus
    pipeline: SearchPipeline
    receipts: ReceiptSigner
    limiter: RateLimiter  # per API key; in process, or shared through FAIRSHARE_REDIS_URL
    _snapshot: CatalogSnapshot | None = None
    _snapshot_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def lock_dir(self) -> Path:
        return self.settings.partition_dir / "locks"

    def vector_indexes(self) -> list[VectorIndex]:
        """Every index ingest writes: FAISS always; Qdrant, the system of record, when open."""
        return [self.faiss] + ([self.qdrant] if self.qdrant is not None else [])

    async def ingest(self, source: Path, dataset_id: str, **options: bool) -> IngestReport:
        """Ingest `source` into `dataset_id` with this process's catalog, embedder and indexes."""
        return await ingest_source(
            source,
            dataset_id=dataset_id,
            catalog=self.catalog,
            embedder=self.embedder,
            vector_indexes=self.vector_indexes(),
            lexical=self.lexical,
            lock_dir=self.lock_dir,
            region=self.settings.region,
            **options,
        )

    def payouts(self) -> Payouts:
        return payouts_for(self.engine, self.settings)

    async def snapshot(self) -> CatalogSnapshot:
        state = await self.catalog.serving_state()
        current = self._snapshot
        if current is not None and current.state == state:
            return current
        async with self._snapshot_lock:
            previous = self._snapshot
            datasets = {d.id: d for d in await self.catalog.list_datasets()}
            owners = {o.id: o for o in await self.catalog.list_owners()}
            self._snapshot = CatalogSnapshot(state, datasets, owners)
            await self._forget_unserved(state, previous)
            return self._snapshot

    async def _forget_unserved(
        self, state: dict[str, tuple[int, str]], previous: CatalogSnapshot | None
    ) -> None:
        """Drop what this process holds in memory of datasets no longer served: a dataset
        revoked by another process (the CLI, another worker) has lost its files and rows, but
        not what this one loaded or cached. Loaded FAISS and BM25 indexes go at once; and when
        a dataset left the serving state, the cross-encoder's scores of every chunk the catalog
        no longer holds in a served dataset."""
        unloaded = self.faiss.retain(state) + self.lexical.retain(state)
        reranker = self.reranker.reranker
        left = previous is not None and not set(previous.state) <= set(state)
        if reranker is None or not (left or unloaded):
            return
        cached = reranker.cache.chunk_ids()
        served = await self.catalog.chunk_datasets(sorted(cached))
        reranker.cache.discard_chunks(c for c in cached if served.get(c) not in state)


def payouts_for(
    engine: AsyncEngine, settings: Settings, *, on_step: StepHook | None = None
) -> Payouts:
    """Payouts through Stripe when FAIRSHARE_STRIPE_API_KEY is set (else runs refuse)."""
    gateway = None
    if settings.stripe_api_key:
        from ledger.stripe_gateway import StripeGateway  # the SDK loads only when paying

        gateway = StripeGateway(settings.stripe_api_key, api_base=settings.stripe_api_base or None)
    return Payouts(engine, gateway, minimum_micros=settings.payout_minimum_micros, on_step=on_step)


@asynccontextmanager
async def open_ledger(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """Just the migrated database, for ledger commands that need no models or indexes."""
    open_partition(settings)
    engine = make_engine(settings.resolved_database_url)
    try:
        await migrate(engine)
        yield engine
    finally:
        await engine.dispose()


async def prepare_ledger(settings: Settings) -> None:
    """Migrate the database and create the receipt signing key if missing: what processes that
    start together (`fairshare serve` workers) would otherwise each try at once."""
    async with open_ledger(settings):
        pass
    await asyncio.to_thread(ReceiptSigner.load_or_create, settings.receipt_key_path)


# What a data directory held at its top level before content moved into region partitions.
_UNPARTITIONED = ("fairshare.db", "faiss", "bm25", "qdrant")


def open_partition(settings: Settings) -> Path:
    """Create this region's partition directory; refuse a data dir from before partitions,
    whose content belongs to a region only its operator can name."""
    legacy = [name for name in _UNPARTITIONED if (settings.data_dir / name).exists()]
    if legacy:
        raise Unavailable(
            f"{settings.data_dir} holds content outside any region partition "
            f"({', '.join(legacy)}). Move it into the partition of the region it was processed "
            f"in, e.g. `mkdir -p {settings.partition_dir} && cd {settings.data_dir} && mv "
            f"{' '.join(legacy)} locks demo-keys.json regions/{settings.region}/`, or start "
            "from an empty data dir."
        )
    settings.partition_dir.mkdir(parents=True, exist_ok=True)
    return settings.partition_dir


def _open_qdrant_index(settings: Settings, dim: int) -> QdrantIndex:
    local = settings.partition_dir / "qdrant"
    try:
        client = open_qdrant(url=settings.qdrant_url or None, path=local)
    except RuntimeError as exc:
        # Local mode allows one process at a time; say what to do instead of a stack trace.
        raise Unavailable(
            f"Qdrant local storage under {local} is in use by another "
            "process (a running `fairshare serve` with FAIRSHARE_VECTOR_BACKEND=qdrant?). "
            "Stop it, or run a Qdrant server and set FAIRSHARE_QDRANT_URL."
        ) from exc
    return QdrantIndex(
        client,
        dim,
        settings.qdrant_collection,
        local_path=None if settings.qdrant_url else local,
    )


def freeze_loaded_heap() -> None:
    """Hide everything loaded so far from the cyclic garbage collector, for a process that has
    just opened its runtime and will now do one long job (serve, ingest).

    The models, tokenizers, language detector and indexes are millions of long-lived objects
    that every full collection would walk again: ~10% of the event loop's CPU under load
    (perf, bench/serve.py), and with them the p99 (GC pauses). None of it is garbage. Not for
    tests or other callers that open many runtimes in one process: whatever is frozen is never
    collected, even after it becomes garbage.
    """
    gc.freeze()


@asynccontextmanager
async def open_runtime(
    settings: Settings, *, with_qdrant: bool | None = None, with_reranker: bool = True
) -> AsyncIterator[Runtime]:
    """Open everything a process needs. Qdrant opens when it serves searches or when
    `with_qdrant` asks for it (ingest writes it as the system of record).

    Content comes only from this region's partition (`settings.partition_dir`, its database and
    its Qdrant collection); the model caches under the data dir hold no content."""
    partition = open_partition(settings)
    engine = make_engine(settings.resolved_database_url)
    qdrant: QdrantIndex | None = None
    limiter: RateLimiter | None = None
    hits = HitLedger(engine, on_batch=LEDGER_BATCH.observe)
    try:
        await migrate(engine)
        embedder = await asyncio.to_thread(
            shared_embedder,
            settings.embedder_model,
            settings.embedder_backend,
            settings.data_dir / "embedder-onnx",
        )
        faiss = FaissIndex(partition / "faiss", embedder.dim)
        lexical = BM25Index(partition / "bm25")
        if with_qdrant or (with_qdrant is None and settings.vector_backend == "qdrant"):
            qdrant = _open_qdrant_index(settings, embedder.dim)
        reranker = (
            await asyncio.to_thread(
                load_reranker,
                settings.reranker_model,
                backend=settings.reranker_backend,
                cache_dir=settings.data_dir / "reranker-onnx",
            )
            if with_reranker
            else RerankerStatus(None, "reranker not loaded by this command")
        )
        serving: VectorIndex = faiss
        if settings.vector_backend == "qdrant":
            if qdrant is None:
                raise Unavailable("FAIRSHARE_VECTOR_BACKEND=qdrant but Qdrant is not open")
            serving = qdrant
        pipeline = SearchPipeline(
            embedder,
            serving,
            lexical,
            reranker.reranker,
            candidate_depth=settings.candidate_depth,
            rerank_depth=settings.rerank_depth,
            embedder_languages=settings.embedder_language_set,
            batch_max_size=settings.batch_max_size,
            batch_max_wait_ms=settings.batch_max_wait_ms,
            observer=ModelMetrics(),
        )
        limiter = await open_rate_limiter(settings)
        yield Runtime(
            settings=settings,
            engine=engine,
            catalog=CatalogStore(engine),
            keys=KeyStore(engine),
            hits=hits,
            embedder=embedder,
            faiss=faiss,
            lexical=lexical,
            qdrant=qdrant,
            reranker=reranker,
            pipeline=pipeline,
            receipts=await asyncio.to_thread(
                ReceiptSigner.load_or_create, settings.receipt_key_path
            ),
            limiter=limiter,
        )
    finally:
        await hits.aclose()  # commit what is queued before the engine goes
        if limiter is not None:
            await limiter.aclose()
        if qdrant is not None:
            qdrant.close()
        await engine.dispose()
