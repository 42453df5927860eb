from __future__ import annotations

import pytest

from ranking.fusion import RRF_K, reciprocal_rank_fusion


def test_item_ranked_high_by_both_lists_wins() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "a", "d"]])
    assert [item for item, _ in fused][:2] in (["a", "b"], ["b", "a"])
    assert {item for item, _ in fused} == {"a", "b", "c", "d"}
    scores = dict(fused)
    assert scores["a"] == pytest.approx(1 / (RRF_K + 1) + 1 / (RRF_K + 2))
    assert scores["d"] == pytest.approx(1 / (RRF_K + 3))


def test_ties_break_on_id_so_order_is_deterministic() -> None:
    assert reciprocal_rank_fusion([["b"], ["a"]]) == reciprocal_rank_fusion([["a"], ["b"]])
    assert [i for i, _ in reciprocal_rank_fusion([["b"], ["a"]])] == ["a", "b"]


def test_weights_shift_the_outcome() -> None:
    lists = [["dense-top", "x"], ["bm25-top", "y"]]
    assert reciprocal_rank_fusion(lists, weights=[1.0, 3.0])[0][0] == "bm25-top"
    assert reciprocal_rank_fusion(lists, weights=[3.0, 1.0])[0][0] == "dense-top"


def test_inputs_are_not_mutated() -> None:
    first, second = ["a", "b"], ["c"]
    reciprocal_rank_fusion([first, second])
    assert first == ["a", "b"] and second == ["c"]
