"""Rank fusion: combine ranked lists whose scores are not comparable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

RRF_K = 60  # Cormack, Clarke & Buettcher, SIGIR 2009: k = 60 was robust across collections.


@dataclass(frozen=True, slots=True)
class FusionWeights:
    """Weighted RRF: score(d) = sum over lists of weight(d) / (k + rank(d)).

    Defaults were fit on the SciFact *train* qrels only (bench/tune_fusion.py), then checked on
    collections never used for fitting; see the README's evaluation table.
    """

    k: int = RRF_K
    dense: float = 1.0
    lexical: float = 1.0


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]],
    *,
    weights: Sequence[float | Callable[[str], float]] | None = None,
    k: int = RRF_K,
) -> list[tuple[str, float]]:
    """Fuse ranked id lists (best first) into one list of (id, score), best first.

    A weight is a number, or a function of the item: the hybrid pipeline gives dense candidates
    in a language its embedder does not read a weight of zero. Ties break on the id, so the
    order is deterministic across runs and backends.
    """
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            w = weight(item) if callable(weight) else weight
            scores[item] = scores.get(item, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))
