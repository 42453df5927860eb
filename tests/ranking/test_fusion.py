from __future__ import annotations

import pytest

from ranking.fusion import RRF_K, reciprocal_rank_fusion, score_fusion


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


def test_score_fusion_is_a_convex_combination_of_max_normalised_scores() -> None:
    fused = dict(
        score_fusion([("a", 0.8), ("b", 0.4)], [("b", 10.0), ("c", 5.0)], dense_weight=0.6)
    )
    assert fused["a"] == pytest.approx(0.6 * 1.0 + 0.4 * 0.5)  # missing lexically: its floor
    assert fused["b"] == pytest.approx(0.6 * 0.5 + 0.4 * 1.0)
    assert fused["c"] == pytest.approx(0.6 * 0.5 + 0.4 * 0.5)  # missing densely: its floor


def test_score_fusion_does_not_depend_on_list_depth() -> None:
    dense = [("a", 0.9), ("b", 0.7), ("c", 0.2), ("d", 0.1)]
    lexical = [("b", 12.0), ("a", 6.0), ("d", 1.0)]
    deep = score_fusion(dense, lexical)
    shallow = score_fusion(dense[:2], lexical[:2])
    assert [i for i, _ in deep][:2] == [i for i, _ in shallow][:2]
    assert dict(deep)["a"] == pytest.approx(dict(shallow)["a"])


def test_score_fusion_item_weight_silences_the_dense_vote() -> None:
    dense = [("foreign", 0.9), ("both", 0.5)]
    lexical = [("both", 3.0), ("lexical", 2.0)]
    fused = score_fusion(
        dense, lexical, dense_item_weight=lambda item: 0.0 if item == "foreign" else 1.0
    )
    assert [i for i, _ in fused] == ["both", "lexical", "foreign"]


def test_a_short_list_is_complete_so_missing_items_score_zero_in_it() -> None:
    dense = [("a", 0.9), ("b", 0.8)]
    lexical = [("b", 4.0)]  # BM25 found one document sharing a term; "a" shares none
    fused = dict(score_fusion(dense, lexical, dense_weight=0.5, depth=2))
    assert fused["a"] == pytest.approx(0.5 * 1.0)
    assert fused["b"] == pytest.approx(0.5 * 0.8 / 0.9 + 0.5 * 1.0)
