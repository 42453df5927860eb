"""The one search pipeline: the HTTP API, the CLI and evaluation all call `SearchPipeline.search`.

embed query -> dense + BM25 candidates (per-dataset, generation-pinned) -> RRF -> cross-encoder
rerank of the head -> ranked chunk ids. Selection under `top_k` and budget happens after the
caller has attached prices (see `ranking.selection`).

Concurrent searches share model calls: query embeddings and cross-encoder heads go through
micro-batchers (`ranking.batching`), and query vectors through a bounded cache
(`ranking.query_cache`). All model, index and language-lookup work runs off the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import anyio
import anyio.to_thread
import numpy as np
from numpy.typing import NDArray

from ranking.batching import MicroBatcher
from ranking.embedder import Embedder
from ranking.fusion import FusionWeights, reciprocal_rank_fusion, score_fusion, weight_of
from ranking.language import UNDETERMINED
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

T = TypeVar("T")
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
        # Model and index work runs off the event loop, bounded so it cannot starve the loop's
        # own threads (health checks, ledger commits).
        self._limiter = anyio.CapacityLimiter(threads)
        self.query_vectors = QueryVectorCache(query_cache_size)
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
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter)

    @property
    def searches_in_flight(self) -> int:
        """Searches started and not yet finished."""
        return self._in_flight

    def _others_in_flight(self, queued: int) -> bool:
        return self._in_flight > queued

    def _embed_batch(self, queries: list[str]) -> list[NDArray[np.float32]]:
        """Vectors for normalised queries: cached ones, the rest in one forward pass."""
        known = self.query_vectors.get_many(queries)
        missing = list(dict.fromkeys(q for q in queries if q not in known))
        if missing:
            fresh = dict(zip(missing, self.embedder.embed_queries(missing), strict=True))
            self.query_vectors.put_many(fresh)
            known.update(fresh)
        return [known[q] for q in queries]

    def _score_batch(self, requests: list[Request]) -> list[list[float]]:
        reranker = self.reranker
        if reranker is None:
            raise RuntimeError("the rerank stage is off")
        return reranker.score_many(requests)

    async def embed_query(self, query: str) -> NDArray[np.float32]:
        """The query's vector, from the cache or batched with concurrent searches' queries.

        The model reads the normalised text (`normalise_query`), so a cached vector is exactly
        what a fresh forward pass would give.
        """
        return await self.embed_batcher.submit(normalise_query(query))

    async def search(
        self,
        query: str,
        *,
        generations: Mapping[str, int],
        rerank: bool,
        texts: TextLoader,
        mode: Mode = "hybrid",
    ) -> Ranking:
        """Rank chunks of the datasets in `generations` for `query`, best first.

        `texts` returns the text the cross-encoder reads for each id it is given (title + chunk);
        ids it omits are treated as no longer visible and dropped from the reranked head.
        """
        self._in_flight += 1
        try:
            return await self._search(query, generations, rerank, texts, mode)
        finally:
            self._in_flight -= 1

    async def _search(
        self,
        query: str,
        generations: Mapping[str, int],
        rerank: bool,
        texts: TextLoader,
        mode: Mode,
    ) -> Ranking:
        started = time.perf_counter()
        dense: list[tuple[str, float]] = []
        lexical: list[tuple[str, float]] = []
        embed_ms = 0.0
        if mode in ("dense", "hybrid"):
            vector = await self.embed_query(query)
            embed_ms = (time.perf_counter() - started) * 1000
            dense = await self._off_loop(
                lambda: self.vectors.search(vector, self.candidate_depth, generations)
            )
        if mode in ("bm25", "hybrid"):
            lexical = await self._off_loop(
                lambda: self.lexical.search(query, self.candidate_depth, generations)
            )
        if mode == "hybrid":
            # The language lookup reads BM25's per-language indexes: index work, off the loop.
            fused = await self._off_loop(lambda: self._fuse(dense, lexical, generations))
        else:
            fused = dense or lexical
        items = [Ranked(chunk_id, score) for chunk_id, score in fused]
        rerank_started = time.perf_counter()
        retrieve_ms = (rerank_started - started) * 1000 - embed_ms
        reranked = False
        if rerank and self.reranker is not None and items:
            items = await self._rerank(query, items, texts)
            reranked = True
        rerank_ms = (time.perf_counter() - rerank_started) * 1000 if reranked else 0.0
        return Ranking(items, reranked, embed_ms, retrieve_ms, rerank_ms)

    def _fuse(
        self,
        dense: list[tuple[str, float]],
        lexical: list[tuple[str, float]],
        generations: Mapping[str, int],
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
            def dense_weight(chunk_id: str) -> float:
                return 1.0 if languages.get(chunk_id, UNDETERMINED) in served else 0.0

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
