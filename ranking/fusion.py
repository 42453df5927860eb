"""Fusion of the dense and lexical candidate lists into one ranking.

Two methods, both pure:

- `score_fusion` (the default): a convex combination of each list's scores divided by that
  list's best score. Max-normalisation makes the two scales comparable without depending on how
  deep the lists go (min-max does, through its minimum). Bruch, Gai & Ingber (ACM TOIS 2023, "An
  Analysis of Fusion Functions for Hybrid Retrieval") find a tuned convex combination beats RRF;
  on SciFact train it does too (bench/tune_fusion.py).
- `reciprocal_rank_fusion`: rank-based, for lists whose scores mean nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

RRF_K = 60  # Cormack, Clarke & Buettcher, SIGIR 2009: k = 60 was robust across collections.
# Weight of the dense list in score fusion, fit on SciFact *train* qrels only with the BM25
# settings in ranking/lexical.py (bench/tune_fusion.py: train nDCG@10 0.7442 at 0.6).
DENSE_WEIGHT = 0.6

Weight = float | Callable[[str], float]


@dataclass(frozen=True, slots=True)
class FusionWeights:
    method: Literal["score", "rrf"] = "score"
    dense: float = DENSE_WEIGHT
    k: int = RRF_K


def weight_of(weight: Weight, item: str) -> float:
    return weight(item) if callable(weight) else weight


def score_fusion(
    dense: Sequence[tuple[str, float]],
    lexical: Sequence[tuple[str, float]],
    *,
    dense_weight: float = DENSE_WEIGHT,
    dense_item_weight: Weight = 1.0,
    depth: int | None = None,
    dense_complete: bool | None = None,
) -> list[tuple[str, float]]:
    """Fuse two (id, score) lists, best first, by `w * dense/max + (1 - w) * lexical/max`.

    An item missing from a list cut at `depth` scores that list's lowest normalised score: it
    ranked somewhere below. A list shorter than `depth` is complete (BM25 returns only documents
    sharing a term), so an item missing from it scores 0 there. `dense_complete` says which the
    dense list is when its length cannot tell (a list filtered after it was cut).
    `dense_item_weight` scales each item's dense part (zero for languages the embedder cannot
    read). Ties break on the id.
    """
    dense_scores = _max_normalised(dense)
    lexical_scores = _max_normalised(lexical)
    if dense_complete is None:
        dense_floor = _floor(dense_scores, depth)
    else:
        dense_floor = 0.0 if dense_complete else min(dense_scores.values(), default=0.0)
    lexical_floor = _floor(lexical_scores, depth)
    fused = {
        item: dense_weight
        * weight_of(dense_item_weight, item)
        * dense_scores.get(item, dense_floor)
        + (1 - dense_weight) * lexical_scores.get(item, lexical_floor)
        for item in dense_scores.keys() | lexical_scores.keys()
    }
    return sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))


def _floor(scores: dict[str, float], depth: int | None) -> float:
    if depth is not None and len(scores) < depth:
        return 0.0
    return min(scores.values(), default=0.0)


def _max_normalised(pairs: Sequence[tuple[str, float]]) -> dict[str, float]:
    top = max((score for _, score in pairs), default=0.0)
    if top <= 0:
        return {item: 0.0 for item, _ in pairs}
    return {item: score / top for item, score in pairs}


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]],
    *,
    weights: Sequence[Weight] | None = None,
    k: int = RRF_K,
) -> list[tuple[str, float]]:
    """Fuse ranked id lists (best first) into one list of (id, score), best first.

    A weight is a number, or a function of the item. Ties break on the id.
    """
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight_of(weight, item) / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))
