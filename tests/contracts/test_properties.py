"""Properties of money arithmetic and of the request contract, tried on generated inputs."""

from __future__ import annotations

from decimal import Decimal

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from contracts import InvalidInput, SearchRequest, split_price
from contracts.money import MICROS_PER_UNIT, MINOR_UNITS
from ledger.payouts import round_to_minor
from ledger.statement_formats import format_units

prices = st.integers(min_value=0, max_value=10**15)
shares = st.integers(min_value=0, max_value=10_000)
amounts = st.integers(min_value=-(10**15), max_value=10**15)
currencies = st.sampled_from(sorted(MINOR_UNITS))


@given(prices, shares)
def test_split_adds_up_and_rounds_half_up_to_the_owner(price: int, bps: int) -> None:
    owner, platform = split_price(price, bps)
    assert owner + platform == price and owner >= 0 and platform >= 0
    exact = Decimal(price) * bps / 10_000
    assert abs(Decimal(owner) - exact) <= Decimal("0.5")
    if exact - int(exact) == Decimal("0.5"):
        assert owner == int(exact) + 1  # a tie goes to the owner


@given(st.integers(max_value=-1) | st.integers(min_value=10_001), prices)
def test_split_refuses_shares_outside_0_to_10000(bps: int, price: int) -> None:
    try:
        split_price(price, bps)
    except InvalidInput:
        return
    raise AssertionError("accepted an impossible share")


@given(amounts, currencies)
def test_format_units_is_exact(micros: int, currency: str) -> None:
    text = format_units(micros, currency)
    assert Decimal(text.replace(",", "")) * MICROS_PER_UNIT == micros
    decimals = len(text.split(".")[1]) if "." in text else 0
    assert (
        decimals >= MINOR_UNITS[currency] or micros % MICROS_PER_UNIT == 0 == MINOR_UNITS[currency]
    )


@given(amounts, currencies)
def test_payout_rounding_never_pays_more_than_due(micros: int, currency: str) -> None:
    paid = round_to_minor(micros, currency)
    step = 10 ** (6 - MINOR_UNITS[currency])
    assert paid % step == 0 and 0 <= paid <= max(micros, 0)
    assert max(micros, 0) - paid < step  # the remainder carried forward is under one minor unit


@given(
    st.dictionaries(
        st.sampled_from(["query", "top_k", "datasets", "max_cost_micros", "rerank", "other"]),
        st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.lists(st.text()),
    )
)
def test_search_request_decodes_or_refuses_cleanly(body: dict[str, object]) -> None:
    """Any JSON object either becomes a valid request or raises ValidationError: nothing else."""
    try:
        request = msgspec.json.decode(msgspec.json.encode(body), type=SearchRequest)
    except msgspec.ValidationError:
        return
    assert 1 <= len(request.query) <= 4_096 and 1 <= request.top_k <= 50
    assert request.max_cost_micros is None or request.max_cost_micros >= 0
