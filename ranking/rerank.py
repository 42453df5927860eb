"""Cross-encoder reranking, optional: with no loadable model the stage is skipped and says so.

Backends (FAIRSHARE_RERANKER_BACKEND): `torch` runs sentence-transformers' `CrossEncoder`;
`onnx` and `onnx-int8` run the same weights exported to ONNX, fp32 or dynamically quantized
(`ranking.rerank_onnx`). Whatever the backend, scores pass through one bounded cache keyed by
(normalised query, chunk id) (`ranking.rerank_cache`), so a repeated query pays only for chunks it
has not scored yet.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from ranking.rerank_cache import RERANK_CACHE_SIZE, CacheKey, ScoreCache, normalise_query

BACKENDS = ("torch", "onnx", "onnx-int8")
# One batch covers the default rerank depth (30); bench/rerank_speed.py measures 16/32/50.
RERANK_BATCH = 32
# The cross-encoder reads query + title + chunk. Chunks are at most 200 word-pieces
# (ingest.chunking.WINDOW_TOKENS); SciFact's titles and queries are 46 and 42 word-pieces at the
# 99th percentile, so 200 + 64 (title) + 48 (query) + 3 ([CLS] [SEP] [SEP]) = 315 reads nearly
# every pair whole. Batches pad to their own longest pair, so the cap costs nothing for shorter
# pairs; it bounds what a freak title or query can cost. Truncation is longest-first, so an
# overlong pair loses the tail of its chunk, which the next chunk's 40-token overlap repeats.
RERANK_MAX_LENGTH = 320

Candidate = tuple[str, str]  # (chunk id, the text the cross-encoder reads: title + chunk)


Request = tuple[str, Sequence[Candidate]]  # (query, its candidates)


class Reranker(Protocol):
    model_name: str
    cache: ScoreCache  # (query, chunk) -> score; its hit and miss counts feed the metrics

    def score(self, query: str, candidates: Sequence[Candidate]) -> list[float]:
        """One score per candidate, in order; higher is better."""
        ...

    def score_many(self, requests: Sequence[Request]) -> list[list[float]]:
        """`score` for several queries at once, in one model call where the backend allows."""
        ...


class PairScorer(Protocol):
    """A backend: scores (query, passage) pairs, no caching. Not thread-safe."""

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]: ...


class CrossEncoderReranker:
    """A `PairScorer` behind the score cache; safe to call from several threads.

    `pairs_scored` counts pairs the model actually ran on (cache misses) and `model_calls` the
    calls that ran them, for tests and metrics.
    """

    def __init__(
        self,
        model_name: str,
        backend: str,
        scorer: PairScorer,
        *,
        cache_size: int = RERANK_CACHE_SIZE,
    ) -> None:
        self.model_name = model_name
        self.backend = backend
        self.scorer = scorer
        self.cache = ScoreCache(cache_size)
        self.pairs_scored = 0
        self.model_calls = 0
        # Neither torch modules nor a shared ORT session gain from concurrent calls on 2 cores:
        # each already uses every core, so a second caller would only thrash them.
        self._lock = threading.Lock()

    def score(self, query: str, candidates: Sequence[Candidate]) -> list[float]:
        return self.score_many([(query, candidates)])[0]

    def score_many(self, requests: Sequence[Request]) -> list[list[float]]:
        """Every request's scores, with all their cache misses in one model call.

        The micro-batcher (`ranking.batching`) hands several concurrent searches' heads here, so
        their pairs share forward passes instead of queueing for the model one search at a time.
        """
        keyed = [
            [(normalise_query(query), chunk_id) for chunk_id, _ in candidates]
            for query, candidates in requests
        ]
        known = self.cache.get_many(key for keys in keyed for key in keys)
        # A chunk id names its text, so one score per (query, id) is enough even if it repeats,
        # within a request or across requests.
        missing: dict[CacheKey, str] = {}
        for keys, (_, candidates) in zip(keyed, requests, strict=True):
            for key, (_, text) in zip(keys, candidates, strict=True):
                if key not in known:
                    missing.setdefault(key, text)
        if missing:
            pairs = [(query, text) for (query, _), text in missing.items()]
            with self._lock:
                fresh = self.scorer.score_pairs(pairs)
                self.pairs_scored += len(pairs)
                self.model_calls += 1
            scored = dict(zip(missing, fresh, strict=True))
            self.cache.put_many(scored)
            known.update(scored)
        return [[known[key] for key in keys] for keys in keyed]


class RerankerStatus:
    """What `/readyz` and responses report about the rerank stage."""

    def __init__(self, reranker: Reranker | None, detail: str) -> None:
        self.reranker = reranker
        self.detail = detail

    @property
    def loaded(self) -> bool:
        return self.reranker is not None


def build_scorer(
    model: str,
    backend: str,
    *,
    cache_dir: Path | None = None,
    max_length: int = RERANK_MAX_LENGTH,
    batch_size: int = RERANK_BATCH,
) -> tuple[PairScorer, str]:
    """The backend's scorer and a note on what it runs (e.g. the ONNX file). Raises on failure."""
    if backend == "torch":
        from ranking.rerank_torch import TorchPairScorer, load_cross_encoder

        return TorchPairScorer(load_cross_encoder(model, max_length), batch_size=batch_size), ""
    if backend in ("onnx", "onnx-int8"):
        from ranking.rerank_onnx import load_onnx_scorer

        scorer = load_onnx_scorer(
            model,
            quantized=backend == "onnx-int8",
            cache_dir=cache_dir,
            max_length=max_length,
            batch_size=batch_size,
        )
        return scorer, str(scorer.model_file)
    raise ValueError(f"unknown reranker backend {backend!r}; expected one of {', '.join(BACKENDS)}")


def load_reranker(
    model: str | None, *, backend: str = "torch", cache_dir: Path | None = None
) -> RerankerStatus:
    """Load the configured cross-encoder, or explain why the stage is off. Never raises.

    `cache_dir` holds ONNX exports when the model's own directory cannot (see `rerank_onnx`).
    """
    if not model:
        return RerankerStatus(None, "no reranker configured (set FAIRSHARE_RERANKER_MODEL)")
    try:
        scorer, note = build_scorer(model, backend, cache_dir=cache_dir)
    except Exception as exc:  # any load failure means "stage off", reported, not a crash
        return RerankerStatus(
            None, f"reranker {model!r} (backend {backend}) could not be loaded: {exc}"[:500]
        )
    detail = f"loaded {model} (backend {backend}{', ' + note if note else ''})"
    return RerankerStatus(CrossEncoderReranker(model, backend, scorer), detail)
