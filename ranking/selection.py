"""Final selection of what a search delivers (and charges for): top_k within a budget."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def select_within_budget(
    ranked: Iterable[T], *, price: Callable[[T], int], top_k: int, max_cost_micros: int | None
) -> list[T]:
    """Take results in rank order until `top_k`, skipping any whose price would exceed the budget.

    A result too expensive for what is left is skipped, not a stopping point: a cheaper one
    further down may still fit, and the customer asked for as many as the budget allows.
    """
    chosen: list[T] = []
    spent = 0
    for item in ranked:
        if len(chosen) == top_k:
            break
        cost = price(item)
        if max_cost_micros is not None and spent + cost > max_cost_micros:
            continue
        chosen.append(item)
        spent += cost
    return chosen
