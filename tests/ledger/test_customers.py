"""Prepaid balances and credit limits: a search is charged only if it can be paid for."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import ConflictError, InvalidInput, NotFound, PaymentRequired
from ledger.catalog import CatalogStore
from ledger.customers import CustomerAccounts
from ledger.hits import HitLedger
from ledger.keys import KeyStore
from ledger.reversals import reverse_query
from ledger.verify import verify
from tests.ledger.support import hit, record, seed_dataset


@pytest.fixture
async def prepaid(engine: AsyncEngine, catalog: CatalogStore, keys: KeyStore) -> str:
    """A strictly prepaid customer with 10,000 micros on account."""
    await seed_dataset(catalog)
    principal, _ = await keys.create_key(customer="Prepaid Co", role="agent")
    accounts = CustomerAccounts(engine)
    await accounts.set_credit_limit("Prepaid Co", 0)
    await accounts.topup("Prepaid Co", amount_micros=10_000, reference="pi_1")
    return principal.customer_id


def _query(customer_id: str, query_id: str, ranks: int, price: int = 2_000) -> list[object]:
    return [hit(query_id, r, price=price, customer_id=customer_id) for r in range(1, ranks + 1)]


async def test_topup_is_booked_once_per_reference(engine: AsyncEngine, prepaid: str) -> None:
    accounts = CustomerAccounts(engine)
    again = await accounts.topup(prepaid, amount_micros=10_000, reference="pi_1")
    assert again.balance.balance_micros == 10_000  # not 20,000
    with pytest.raises(ConflictError, match="pi_1"):
        await accounts.topup(prepaid, amount_micros=5, reference="pi_1")
    for amount, reference in ((0, "x"), (-5, "x"), (10**16, "x"), (5, ""), (5, "bad\nref")):
        with pytest.raises(InvalidInput):
            await accounts.topup(prepaid, amount_micros=amount, reference=reference)
    with pytest.raises(NotFound):
        await accounts.topup("nobody", amount_micros=5, reference="pi_2")
    report = await verify(engine)
    assert report.ok, report.problems
    balances = {b.account_id: b.balance_micros for b in report.balances}
    assert balances[f"customer:{prepaid}"] == -10_000 and balances["gateway:stripe:USD"] == 10_000


async def test_a_search_beyond_the_balance_is_402_and_records_nothing(
    engine: AsyncEngine, ledger: HitLedger, prepaid: str
) -> None:
    await record(ledger, "q1", _query(prepaid, "q1", 3), customer_id=prepaid)  # 6,000
    with pytest.raises(PaymentRequired) as refused:
        await record(ledger, "q2", _query(prepaid, "q2", 3), customer_id=prepaid)  # 6,000 > 4,000
    assert refused.value.extra == {
        "required_micros": 6_000,
        "balance_micros": 4_000,
        "available_micros": 4_000,
    }
    assert await ledger.hits_for_query("q2") == []
    await record(ledger, "q3", _query(prepaid, "q3", 2), customer_id=prepaid)  # exactly 4,000
    balance = await CustomerAccounts(engine).balance(prepaid)
    assert (balance.balance_micros, balance.available_micros) == (0, 0)
    await reverse_query(engine, "q3", reason="bad_result", rank=1)  # refund 2,000
    assert (await CustomerAccounts(engine).balance(prepaid)).available_micros == 2_000


async def test_concurrent_searches_cannot_overspend(
    engine: AsyncEngine, ledger: HitLedger, prepaid: str
) -> None:
    other = HitLedger(engine)  # a second API process

    async def one(n: int) -> str:
        try:
            await record(
                (ledger, other)[n % 2], f"q{n}", _query(prepaid, f"q{n}", 1), customer_id=prepaid
            )
        except PaymentRequired:
            return "402"
        return "200"

    outcomes = await asyncio.gather(*(one(n) for n in range(12)))
    assert outcomes.count("200") == 5 and outcomes.count("402") == 7  # 5 x 2,000 = 10,000
    assert (await CustomerAccounts(engine).balance(prepaid)).balance_micros == 0
    assert (await verify(engine)).ok


async def test_credit_limit_lets_a_balance_go_negative_up_to_the_limit(
    engine: AsyncEngine, ledger: HitLedger, prepaid: str
) -> None:
    accounts = CustomerAccounts(engine)
    await accounts.set_credit_limit(prepaid, 3_000)
    await record(ledger, "q1", _query(prepaid, "q1", 6), customer_id=prepaid)  # 12,000
    balance = await accounts.balance(prepaid)
    assert (balance.balance_micros, balance.available_micros) == (-2_000, 1_000)
    with pytest.raises(PaymentRequired):
        await record(ledger, "q2", _query(prepaid, "q2", 1), customer_id=prepaid)
    await accounts.set_credit_limit(prepaid, None)  # invoiced: no limit
    await record(ledger, "q3", _query(prepaid, "q3", 1), customer_id=prepaid)
    assert (await accounts.balance(prepaid)).available_micros is None
    with pytest.raises(InvalidInput):
        await accounts.set_credit_limit(prepaid, -1)
