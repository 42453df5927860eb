"""The one search pipeline: the HTTP API, the CLI and evaluation all call `SearchPipeline.search`.

embed query -> dense + BM25 candidates (per-dataset, generation-pinned, optionally only in some
languages) -> fusion -> cross-encoder rerank of the head -> ranked chunk ids. Selection under
`top_k` and budget happens after the caller has attached prices (see `ranking.selection`).

Concurrent searches share model calls: query embeddings and cross-encoder heads go through
micro-batchers (`ranking.batching`), and query vectors through a bounded cache
(`ranking.query_cache`). All model, index and language-lookup work runs off the event loop.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from ranking.batching import MicroBatcher
from ranking.embedder import Embedder
from ranking.fusion import FusionWeights, reciprocal_rank_fusion, score_fusion, weight_of
from ranking.language import UNDETERMINED, detect_query_language
from ranking.lexical import BM25Index
from ranking.query_cache import QUERY_CACHE_SIZE, QueryVectorCache
from ranking.rerank import Candidate, Request, Reranker
from ranking.rerank_cache import normalise_query
from ranking.vectors import VectorIndex

Mode = Literal["bm25", "dense", "hybrid"]
# Candidates per retriever: DESIGN.md's baseline Recall@100 is measured at this depth.
CANDIDATE_DEPTH = 100
# The cross-encoder scores ~170 pairs/s on 2 cores (DESIGN.md); 30 keeps a rerank near 200 ms.
RERANK_DEPTH = 30
# Largest micro-batch: 32 queries embed in about the time of a few alone on 2 cores, and 32
# rerank heads of 30 pairs are already ~1,000 pairs, past which a batch only adds latency.
BATCH_MAX_SIZE = 32
# How long a batch may wait for more searches that are in flight: about half a query embedding
# (5.5 ms, DESIGN.md), so a request waiting is never slowed by more than that.
BATCH_MAX_WAIT_MS = 2.0
# With a language filter, dense search runs deeper so that `candidate_depth` of its candidates
# survive the filter (it cannot filter inside FAISS), but never more than this many times
# deeper: a filter on a sliver of a large corpus would otherwise rank the whole corpus.
LANGUAGE_FILTER_MAX_OVERFETCH = 10
# How much deeper each retry goes: the deepest search is reached in two retries.
LANGUAGE_FILTER_DEEPENING = 4

T = TypeVar("T")


class PipelineObserver(Protocol):
    """Told what the pipeline's models and caches do, for metrics. `stage` is "embed" or
    "rerank". Called on the event loop or off it, so it must be thread-safe and quick."""

    def model_call(self, stage: str, size: int) -> None:
        """One forward pass over `size` queries (embed) or searches' heads (rerank)."""

    def cache_lookups(self, stage: str, hits: int, misses: int) -> None:
        """Query-vector (embed) or (query, chunk) score (rerank) cache lookups."""


class _Unobserved:
    def model_call(self, stage: str, size: int) -> None:
        pass

    def cache_lookups(self, stage: str, hits: int, misses: int) -> None:
        pass


DEFAULT_FUSION = FusionWeights()
TextLoader = Callable[[Sequence[str]], Awaitable[Mapping[str, str]]]


@dataclass(frozen=True, slots=True)
class Ranked:
    chunk_id: str
    score: float


@dataclass(frozen=True, slots=True)
class Ranking:
    items: list[Ranked]
    reranked: bool
    embed_ms: float
    retrieve_ms: float
    rerank_ms: float
    # The query's language when the detector is confident, else "und" (bench/query_language.py
    # measures how often it is wrong). Fusion lets the embedder vote when it reads the query.
    query_language: str = UNDETERMINED


class SearchPipeline:
    def __init__(
        self,
        embedder: Embedder,
        vectors: VectorIndex,
        lexical: BM25Index,
        reranker: Reranker | None,
        *,
        candidate_depth: int = CANDIDATE_DEPTH,
        rerank_depth: int = RERANK_DEPTH,
        threads: int = 2,
        fusion: FusionWeights = DEFAULT_FUSION,
        embedder_languages: frozenset[str] | None = frozenset({"en"}),
        batch_max_size: int = BATCH_MAX_SIZE,
        batch_max_wait_ms: float = BATCH_MAX_WAIT_MS,
        query_cache_size: int = QUERY_CACHE_SIZE,
        observer: PipelineObserver | None = None,
    ) -> None:
        self.embedder = embedder
        self.vectors = vectors
        self.lexical = lexical
        self.reranker = reranker
        self.candidate_depth = candidate_depth
        self.rerank_depth = rerank_depth
        self.fusion = fusion
        # Languages the embedder was trained on (None: any). Dense candidates in other languages
        # get no weight in fusion: all-MiniLM-L6-v2 scores 0.075 nDCG@10 on Arabic XQuAD-R
        # against BM25's 0.670 (DESIGN.md), so letting it vote only drags BM25 down.
        self.embedder_languages = embedder_languages
        # Model and index work runs off the event loop on its own few threads, so it cannot
        # starve the loop or the ledger's threads (health checks, commits). A plain executor:
        # anyio's `to_thread` cost ~5% of the event loop's CPU at 16 clients in its
        # bookkeeping (limiter, run vars, root-task lookup), measured with py-spy.
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="pipeline")
        self.query_vectors = QueryVectorCache(query_cache_size)
        self.observer = observer or _Unobserved()
        # Searches between start and finish: the batchers linger only while some in flight
        # have not queued yet, so a lone search (the CLI, `fairshare eval`) never waits.
        self._in_flight = 0
        self.embed_batcher: MicroBatcher[str, NDArray[np.float32]] = MicroBatcher(
            self._embed_batch,
            self._off_loop,
            max_batch=batch_max_size,
            max_wait_ms=batch_max_wait_ms,
            linger=self._others_in_flight,
        )
        self.rerank_batcher: MicroBatcher[Request, list[float]] = MicroBatcher(
            self._score_batch,
            self._off_loop,
            max_batch=batch_max_size,
            max_wait_ms=batch_max_wait_ms,
            linger=self._others_in_flight,
        )

    async def _off_loop(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn)

    @property
    def searches_in_flight(self) -> int:
        """Searches started and not yet finished."""
        return self._in_flight

    def _others_in_flight(self, queued: int) -> bool:
        return self._in_flight > queued

    def _embed_batch(self, queries: list[str]) -> list[NDArray[np.float32]]:
        """Vectors for normalised queries: cached ones, the rest in one forward pass."""
        # Looked up again (uncounted: `embed_query` counted these as misses) because a twin in
        # an earlier batch may have filled the cache since.
        known = self.query_vectors.get_many(queries, count=False)
        missing = list(dict.fromkeys(q for q in queries if q not in known))
        if missing:
            fresh = dict(zip(missing, self.embedder.embed_queries(missing), strict=True))
            self.query_vectors.put_many(fresh)
            known.update(fresh)
            self.observer.model_call("embed", len(missing))
        return [known[q] for q in queries]

    def _score_batch(self, requests: list[Request]) -> list[list[float]]:
        reranker = self.reranker
        if reranker is None:
            raise RuntimeError("the rerank stage is off")
        cache = reranker.cache
        # One rerank batch runs at a time (its batcher), so the counters' change is this call's.
        hits, misses = cache.hits, cache.misses
        scores = reranker.score_many(requests)
        missed = cache.misses - misses
        self.observer.cache_lookups("rerank", cache.hits - hits, missed)
        if missed:
            self.observer.model_call("rerank", len(requests))
        return scores

    async def embed_query(self, query: str) -> NDArray[np.float32]:
        """The query's vector, from the cache or batched with concurrent searches' queries.

        The model reads the normalised text (`normalise_query`), so a cached vector is exactly
        what a fresh forward pass would give. A cached query never queues behind the model.
        """
        normalised = normalise_query(query)
        cached = self.query_vectors.get_many([normalised])
        self.observer.cache_lookups("embed", len(cached), 1 - len(cached))
        if cached:
            return cached[normalised]
        return await self.embed_batcher.submit(normalised)

    def begin(self, query: str, mode: Mode = "hybrid") -> PendingSearch:
        """Start a search: the query's embedding begins at once, so a caller can do its own
        I/O (auth, catalog state, an idempotency replay) while the model runs, then finish
        with `PendingSearch.rank`. Use it as an async context manager."""
        return PendingSearch(self, query, mode)

    async def search(
        self,
        query: str,
        *,
        generations: Mapping[str, int],
        rerank: bool,
        texts: TextLoader,
        mode: Mode = "hybrid",
        languages: Collection[str] | None = None,
    ) -> Ranking:
        """Rank chunks of the datasets in `generations` for `query`, best first.

        `texts` returns the text the cross-encoder reads for each id it is given (title + chunk);
        ids it omits are treated as no longer visible and dropped from the reranked head.
        `languages` (None: all) keeps only chunks in those languages (as detected at ingest).
        """
        async with self.begin(query, mode) as pending:
            return await pending.rank(
                generations=generations, rerank=rerank, texts=texts, languages=languages
            )

    def _retrieve(
        self,
        query: str,
        vector: NDArray[np.float32] | None,
        generations: Mapping[str, int],
        mode: Mode,
        languages: Collection[str] | None = None,
        query_language: str = UNDETERMINED,
    ) -> list[tuple[str, float]]:
        """Dense and/or BM25 candidates, fused: all index work in one trip off the event loop
        (the language lookup fusion needs reads BM25's per-language indexes)."""
        dense: list[tuple[str, float]] = []
        lexical: list[tuple[str, float]] = []
        dense_complete: bool | None = None
        counts: Counter[str] = Counter()
        if languages is not None:
            counts = self.lexical.language_counts(generations)
            if not any(counts[language] for language in languages):
                return []
        if vector is not None and languages is None:
            dense = self.vectors.search(vector, self.candidate_depth, generations)
        elif vector is not None and languages is not None:
            dense, dense_complete = self._dense_in(vector, generations, languages, counts)
        if mode in ("bm25", "hybrid"):
            lexical = self.lexical.search(query, self.candidate_depth, generations, languages)
        if mode == "hybrid":
            return self._fuse(dense, lexical, generations, dense_complete, query_language)
        return dense or lexical

    def _dense_in(
        self,
        vector: NDArray[np.float32],
        generations: Mapping[str, int],
        languages: Collection[str],
        counts: Counter[str],
    ) -> tuple[list[tuple[str, float]], bool]:
        """Dense candidates in `languages` only, and whether they are all there are.

        The vector indexes cannot filter by language, so the search starts as deep as the
        languages' share of the chunks suggests and deepens while too few survive the filter
        (the nearest chunks of an English query are English, whatever the shares).
        """
        total = sum(counts.values())
        share = sum(counts[language] for language in languages) / total
        deepest = min(total, self.candidate_depth * LANGUAGE_FILTER_MAX_OVERFETCH)
        depth = min(deepest, math.ceil(self.candidate_depth / share))
        while True:
            found = self.vectors.search(vector, depth, generations)
            language_of = self.lexical.languages_of([c for c, _ in found], generations)
            kept = [(c, score) for c, score in found if language_of.get(c) in languages]
            everything = depth >= total or len(found) < depth
            if len(kept) >= self.candidate_depth or everything or depth >= deepest:
                break
            depth = min(deepest, depth * LANGUAGE_FILTER_DEEPENING)
        return kept[: self.candidate_depth], everything and len(kept) <= self.candidate_depth

    def _fuse(
        self,
        dense: list[tuple[str, float]],
        lexical: list[tuple[str, float]],
        generations: Mapping[str, int],
        dense_complete: bool | None = None,
        query_language: str = UNDETERMINED,
    ) -> list[tuple[str, float]]:
        served = self.embedder_languages
        dense_weight: float | Callable[[str], float] = 1.0
        if served is not None:
            # Every candidate needs its language, lexical-only ones too: they get the dense
            # list's floor score, which must be silenced for a foreign chunk as well.
            candidates = list(dict.fromkeys([c for c, _ in dense] + [c for c, _ in lexical]))
            languages = self.lexical.languages_of(candidates, generations)

            # Text whose language could not be told (codes, numbers, a few words) gets no dense
            # vote either: one such chunk near the top of every dense list would outrank BM25.
            # The embedder also gets a vote when it reads the query: an English question's vector
            # is sound, and names, numbers and shared words still place a German chunk near it.
            # On XQuAD-R, English questions against each other language's sentences rose above
            # BM25's nDCG@10 in all seven (German 0.280 -> 0.436), to within 0.02 of the dense
            # list's or above it; each language's own questions, and SciFact (all English),
            # scored as before (README, Evaluation).
            reads_query = query_language in served

            def dense_weight(chunk_id: str) -> float:
                language = languages.get(chunk_id, UNDETERMINED)
                if language in served:
                    return 1.0
                return 1.0 if reads_query and language != UNDETERMINED else 0.0

        if self.fusion.method == "rrf":
            return reciprocal_rank_fusion(
                [[c for c, _ in dense], [c for c, _ in lexical]],
                weights=[lambda c: self.fusion.dense * weight_of(dense_weight, c), 1.0],
                k=self.fusion.k,
            )
        return score_fusion(
            dense,
            lexical,
            dense_weight=self.fusion.dense,
            dense_item_weight=dense_weight,
            depth=self.candidate_depth,
            dense_complete=dense_complete,
        )

    async def _rerank(self, query: str, items: list[Ranked], texts: TextLoader) -> list[Ranked]:
        reranker = self.reranker
        assert reranker is not None
        head, tail = items[: self.rerank_depth], items[self.rerank_depth :]
        loaded = await texts([item.chunk_id for item in head])
        visible = [item for item in head if item.chunk_id in loaded]
        candidates: list[Candidate] = [(item.chunk_id, loaded[item.chunk_id]) for item in visible]
        scores = await self.rerank_batcher.submit((query, candidates))
        rescored = sorted(
            (Ranked(item.chunk_id, score) for item, score in zip(visible, scores, strict=True)),
            key=lambda r: (-r.score, r.chunk_id),
        )
        # The unreranked tail keeps its fusion order below the head: scores from two models
        # are not comparable, so they are never interleaved.
        return rescored + tail


class PendingSearch:
    """One search between `SearchPipeline.begin` and the end of its `async with` block.

    It counts as in flight for the whole block, so the micro-batchers linger for it while it
    does its caller's I/O; leaving the block cancels an embedding nobody awaited.
    """

    def __init__(self, pipeline: SearchPipeline, query: str, mode: Mode) -> None:
        self._pipeline = pipeline
        self._query = query
        self._mode = mode
        self._started = time.perf_counter()
        self._vector: asyncio.Future[NDArray[np.float32]] | None = None
        self._embedded = self._started

    async def __aenter__(self) -> PendingSearch:
        self._pipeline._in_flight += 1
        if self._mode in ("dense", "hybrid"):
            self._vector = asyncio.ensure_future(self._pipeline.embed_query(self._query))
            self._vector.add_done_callback(self._stamp)
        return self

    def _stamp(self, _: object) -> None:
        self._embedded = time.perf_counter()

    async def __aexit__(self, *exc_info: object) -> None:
        self._pipeline._in_flight -= 1
        vector = self._vector
        if vector is not None and not vector.done():
            vector.cancel()  # the batcher drops a cancelled item before it reaches the model
        elif vector is not None and not vector.cancelled():
            vector.exception()  # retrieved, so a failure the caller never awaited is not logged

    async def rank(
        self,
        *,
        generations: Mapping[str, int],
        rerank: bool,
        texts: TextLoader,
        languages: Collection[str] | None = None,
    ) -> Ranking:
        """Finish the search over `generations` (see `SearchPipeline.search`)."""
        pipeline = self._pipeline
        vector = await self._vector if self._vector is not None else None
        wanted = None if languages is None else frozenset(languages)
        retrieve_started = time.perf_counter()
        query, mode = self._query, self._mode

        def retrieve() -> tuple[list[Ranked], str]:
            language = detect_query_language(query)
            fused = pipeline._retrieve(query, vector, generations, mode, wanted, language)
            # Built here, not on the event loop: ~200 frozen dataclasses are ~0.2 ms of Python.
            return [Ranked(chunk_id, score) for chunk_id, score in fused], language

        items, query_language = await pipeline._off_loop(retrieve)
        rerank_started = time.perf_counter()
        reranked = False
        if rerank and pipeline.reranker is not None and items:
            items = await pipeline._rerank(self._query, items, texts)
            reranked = True
        finished = time.perf_counter()
        return Ranking(
            items,
            reranked,
            # From `begin` to the vector: the caller's own I/O runs meanwhile.
            embed_ms=(self._embedded - self._started) * 1000,
            retrieve_ms=(rerank_started - retrieve_started) * 1000,
            rerank_ms=(finished - rerank_started) * 1000 if reranked else 0.0,
            query_language=query_language,
        )
