"""The query-vector cache: a bounded LRU that never lets a caller change another's vector."""

from __future__ import annotations

import numpy as np
import pytest

from ranking.query_cache import QueryVectorCache


def vec(x: float) -> np.ndarray:
    return np.full(4, x, dtype=np.float32)


def test_query_cache_is_a_bounded_lru() -> None:
    cache = QueryVectorCache(max_entries=2)
    cache.put_many({"a": vec(1), "b": vec(2)})
    assert list(cache.get_many(["a"])) == ["a"]  # touch a: b is now oldest
    cache.put_many({"c": vec(3)})
    assert len(cache) == 2
    assert sorted(cache.get_many(["a", "b", "c"])) == ["a", "c"]
    assert (cache.hits, cache.misses) == (3, 1)


def test_query_cache_hands_out_copies() -> None:
    cache = QueryVectorCache()
    stored = vec(1)
    cache.put_many({"q": stored})
    stored[:] = 9
    served = cache.get_many(["q"])["q"]
    served[:] = 7
    assert cache.get_many(["q"])["q"].tolist() == [1.0] * 4


def test_a_zero_sized_cache_keeps_nothing() -> None:
    cache = QueryVectorCache(max_entries=0)
    cache.put_many({"q": vec(1)})
    assert len(cache) == 0
    with pytest.raises(ValueError):
        QueryVectorCache(max_entries=-1)
