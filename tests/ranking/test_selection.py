from __future__ import annotations

from ranking.selection import select_within_budget


def test_top_k_caps_the_count() -> None:
    assert select_within_budget([1, 2, 3, 4], price=lambda _: 5, top_k=2, max_cost_micros=None) == [
        1,
        2,
    ]


def test_budget_skips_what_does_not_fit_and_takes_cheaper_later_items() -> None:
    prices = {"a": 4000, "b": 4000, "c": 1333, "d": 2500}
    chosen = select_within_budget(
        ["a", "b", "c", "d"], price=prices.__getitem__, top_k=10, max_cost_micros=6000
    )
    assert chosen == ["a", "c"]
    assert sum(prices[x] for x in chosen) <= 6000


def test_budget_below_every_price_selects_nothing() -> None:
    assert select_within_budget(["a"], price=lambda _: 10, top_k=5, max_cost_micros=9) == []


def test_zero_budget_allows_free_results() -> None:
    assert select_within_budget(["a"], price=lambda _: 0, top_k=5, max_cost_micros=0) == ["a"]
