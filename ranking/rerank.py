"""Cross-encoder reranking, optional: with no loadable model the stage is skipped and says so."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from ranking.embedder import quiet_model_loading

RERANK_BATCH = 32
# Chunks are at most ~200 word-pieces plus a title; 256 covers query + passage without truncating
# typical pairs, and matches the MiniLM position budget the cost figures in DESIGN.md were taken at.
RERANK_MAX_LENGTH = 256


class Reranker(Protocol):
    model_name: str

    def score(self, query: str, passages: Sequence[str]) -> list[float]: ...


class CrossEncoderReranker:
    """sentence-transformers `CrossEncoder` scoring (query, passage) pairs; higher is better."""

    def __init__(self, model: str, *, max_length: int = RERANK_MAX_LENGTH) -> None:
        quiet_model_loading()
        from sentence_transformers import CrossEncoder

        self.model_name = model
        self._model = CrossEncoder(model, num_labels=1, max_length=max_length, device="cpu")
        self._lock = threading.Lock()

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        if not passages:
            return []
        with self._lock:
            scores = self._model.predict(
                [(query, passage) for passage in passages],
                batch_size=RERANK_BATCH,
                show_progress_bar=False,
                convert_to_numpy=True,
            )
        return [float(s) for s in scores]


class RerankerStatus:
    """What `/readyz` and responses report about the rerank stage."""

    def __init__(self, reranker: Reranker | None, detail: str) -> None:
        self.reranker = reranker
        self.detail = detail

    @property
    def loaded(self) -> bool:
        return self.reranker is not None


def load_reranker(model: str | None) -> RerankerStatus:
    """Load the configured cross-encoder, or explain why the stage is off. Never raises."""
    if not model:
        return RerankerStatus(None, "no reranker configured (set FAIRSHARE_RERANKER_MODEL)")
    try:
        reranker = CrossEncoderReranker(model)
    except Exception as exc:  # any load failure means "stage off", reported, not a crash
        return RerankerStatus(None, f"reranker {model!r} could not be loaded: {exc}"[:500])
    return RerankerStatus(reranker, f"loaded {model}")
