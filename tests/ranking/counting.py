"""Thin wrappers over the real models that count the calls tests assert batching with."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ranking.embedder import Embedder
from ranking.rerank import PairScorer


class CountingEmbedder:
    """The real embedder, counting how many queries each `embed_queries` call carried."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.dim = inner.dim
        self.max_tokens = inner.max_tokens
        self.calls: list[int] = []

    def embed_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.calls.append(len(texts))
        return self.inner.embed_queries(texts)

    def embed_passages(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self.inner.embed_passages(texts)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return self.inner.token_spans(text)


class CountingScorer:
    """The real cross-encoder backend, counting its calls and the pairs each carried."""

    def __init__(self, inner: PairScorer) -> None:
        self.inner = inner
        self.calls: list[int] = []

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        self.calls.append(len(pairs))
        return self.inner.score_pairs(pairs)
