"""BM25's top-k selection among matching documents equals a full sort of every score."""

from __future__ import annotations

import numpy as np
import pytest

from ranking.lexical import top_k


@pytest.mark.parametrize("seed", range(20))
def test_top_k_equals_sorting_every_score(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    # Mostly zeros (documents sharing no query word), and many ties among the rest.
    scores = np.where(rng.random(n) < 0.9, 0.0, rng.integers(1, 6, n) / 4).astype(np.float32)
    for k in (1, 10, 100, n + 5):
        expected = sorted((i for i in range(n) if scores[i] > 0), key=lambda i: (-scores[i], i))
        assert top_k(scores, k).tolist() == expected[:k]


def test_no_match_gives_nothing() -> None:
    assert top_k(np.zeros(50, dtype=np.float32), 10).tolist() == []
