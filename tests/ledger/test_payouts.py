"""Payouts through the real Stripe SDK against a local fake of Stripe's HTTP API.

Every scenario ends with the same three checks: each owner received exactly what is due (one
transfer per payout, the platform balance debited once), the ledger verifies, and the rounding
remainder is still in the owner's payable, carried forward.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import ConflictError, InvalidInput, Owner
from ledger.catalog import CatalogStore
from ledger.hits import HitLedger
from ledger.payouts import Payouts, StepHook
from ledger.periods import close_period
from ledger.statements import build_statement
from ledger.stripe_gateway import StripeGateway
from ledger.verify import verify
from tests.ledger.support import hit, licence, record
from tests.stripe_fake import FakeStripe

FEB = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
START_BALANCE = 1_000_000  # cents of USD on the platform's Stripe balance


class SimulatedCrash(Exception):
    pass


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as stripe:
        stripe.set_balance("usd", START_BALANCE)
        yield stripe


def _payouts(engine: AsyncEngine, fake: FakeStripe, on_step: StepHook | None = None) -> Payouts:
    gateway = StripeGateway(fake.api_key, api_base=fake.api_base, timeout_s=5)
    return Payouts(engine, gateway, minimum_micros=1_000_000, on_step=on_step)


async def _january(
    catalog: CatalogStore, ledger: HitLedger, engine: AsyncEngine, fake: FakeStripe
) -> None:
    """acme earns 12.345678 USD, zeta 3.000000, tiny 0.5 (below the minimum), nobank 2.0 (no
    Stripe account); then January is closed."""
    shares = {"acme": 12_345_678, "zeta": 3_000_000, "tiny": 500_000, "nobank": 2_000_000}
    for n, (owner_id, owner_micros) in enumerate(shares.items()):
        account = None if owner_id == "nobank" else fake.add_account(f"acct_{owner_id}")
        await catalog.add_owner(Owner(id=owner_id, name=owner_id.title(), stripe_account=account))
        await catalog.add_dataset(
            dataset_id=f"ds-{owner_id}",
            owner_id=owner_id,
            name=owner_id,
            description="",
            licence=licence(f"lic-{owner_id}", price=owner_micros, share_bps=10_000),
        )
        query_id = f"q{n}"
        await record(
            ledger,
            query_id,
            [
                hit(
                    query_id,
                    1,
                    price=owner_micros,
                    share_bps=10_000,
                    owner_id=owner_id,
                    dataset_id=f"ds-{owner_id}",
                    licence_id=f"lic-{owner_id}",
                )
            ],
        )
    await close_period(engine, "2026-01", now=FEB)


async def _assert_paid_once(engine: AsyncEngine, fake: FakeStripe) -> None:
    transfers = fake.transfers
    by_destination = sorted((t["destination"], t["amount"]) for t in transfers)
    assert by_destination == [("acct_acme", 1_234), ("acct_zeta", 300)]
    assert fake.balance("usd") == START_BALANCE - 1_534
    report = await verify(engine)
    assert report.ok, report.problems
    balances = {b.account_id: b.balance_micros for b in report.balances}
    assert balances["owner:acme"] == -5_678  # the rounding, carried forward
    assert balances["owner:zeta"] == 0
    assert balances["owner:tiny"] == -500_000 and balances["owner:nobank"] == -2_000_000
    assert balances["gateway:stripe:USD"] == -15_340_000


async def test_run_pays_each_owner_once_and_carries_the_rest(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger, fake: FakeStripe
) -> None:
    await _january(catalog, ledger, engine, fake)
    payouts = _payouts(engine, fake)
    outcomes = {o.owner_id: o for o in await payouts.run("2026-01")}
    assert outcomes["acme"].payout is not None and outcomes["acme"].payout.state == "paid"
    assert outcomes["acme"].payout.amount_micros == 12_340_000
    assert outcomes["tiny"].payout is None and "below the minimum" in outcomes["tiny"].note
    assert outcomes["nobank"].payout is None and "no Stripe account" in outcomes["nobank"].note
    await _assert_paid_once(engine, fake)
    posted = fake.transfers[0]
    assert posted["transfer_group"] == "fairshare-2026-01"
    assert posted["metadata"]["payout_id"] in {"po_2026-01_acme_1", "po_2026-01_zeta_1"}

    # A rerun of a finished period pays nothing.
    again = await payouts.run("2026-01")
    assert {o.owner_id: o.note for o in again}["acme"] == "already planned"
    await _assert_paid_once(engine, fake)

    statement = await build_statement(engine, owner_id="acme", period="2026-01")
    assert statement.closed and statement.payout is not None
    assert statement.payout.transfer_id == outcomes["acme"].payout.transfer_id
    assert (
        statement.payable_micros,
        statement.payout_micros,
        statement.carried_forward_micros,
    ) == (
        12_345_678,
        12_340_000,
        5_678,
    )
    assert await payouts.reconcile("2026-01") == []


async def test_open_period_is_not_paid(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger, fake: FakeStripe
) -> None:
    await _january(catalog, ledger, engine, fake)
    with pytest.raises(InvalidInput, match="2026-02 is open"):
        await _payouts(engine, fake).run("2026-02")
    with pytest.raises(InvalidInput, match="payouts need a gateway"):
        await Payouts(engine, None).run("2026-01")
    assert fake.transfers == []


@pytest.mark.parametrize("crash_after", ["pending", "submitted", "transferred", "paid"])
@pytest.mark.parametrize("keys_expired", [False, True])
async def test_a_crash_between_any_two_steps_then_a_rerun_pays_once(
    engine: AsyncEngine,
    catalog: CatalogStore,
    ledger: HitLedger,
    fake: FakeStripe,
    crash_after: str,
    keys_expired: bool,
) -> None:
    await _january(catalog, ledger, engine, fake)

    def crash(payout_id: str, state: str) -> None:
        if state == crash_after:
            raise SimulatedCrash(f"{payout_id} after {state}")

    with pytest.raises(SimulatedCrash):
        await _payouts(engine, fake, on_step=crash).run("2026-01")
    if keys_expired:  # the rerun comes more than 24 h later: Stripe forgot the keys
        fake.forget_idempotency_keys()
    await _payouts(engine, fake).run("2026-01")
    await _assert_paid_once(engine, fake)
    assert all(p.state == "paid" for p in await _payouts(engine, fake).list_payouts())


async def test_a_lost_answer_leaves_the_payout_submitted_until_a_rerun(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger, fake: FakeStripe
) -> None:
    await _january(catalog, ledger, engine, fake)
    fake.fail_next("error_after")  # Stripe makes the first transfer, its answer is lost
    payouts = _payouts(engine, fake)
    first = {o.owner_id: o for o in await payouts.run("2026-01")}
    assert first["acme"].payout is not None and first["acme"].payout.state == "submitted"
    assert "outcome unknown" in first["acme"].note
    mismatches = await payouts.reconcile("2026-01")
    assert [m.payout_id for m in mismatches] == ["po_2026-01_acme_1"]
    assert "payout is submitted" in mismatches[0].problem
    await payouts.run("2026-01")
    await _assert_paid_once(engine, fake)
    assert await payouts.reconcile("2026-01") == []


async def test_a_refused_transfer_stays_failed_until_retried(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger, fake: FakeStripe
) -> None:
    await _january(catalog, ledger, engine, fake)
    fake.set_balance("usd", 500)  # enough for zeta (300), not for acme (1234)
    payouts = _payouts(engine, fake)
    outcomes = {o.owner_id: o for o in await payouts.run("2026-01")}
    failed = outcomes["acme"].payout
    assert failed is not None and failed.state == "failed" and failed.failure
    assert "balance" in failed.failure.lower()
    statement = await build_statement(engine, owner_id="acme", period="2026-01")
    assert statement.payout == failed and statement.payout_micros == 0
    assert statement.carried_forward_micros == 12_345_678
    await payouts.run("2026-01")  # a rerun does not retry a refused transfer by itself
    assert len(fake.transfers) == 1

    with pytest.raises(ConflictError, match="only a failed payout"):
        await payouts.retry("po_2026-01_zeta_1")
    fake.set_balance("usd", START_BALANCE - 300)
    retried = await payouts.retry(failed.payout_id)
    assert retried.payout is not None and retried.payout.payout_id == "po_2026-01_acme_2"
    assert retried.payout.state == "paid"
    with pytest.raises(ConflictError, match="already retried"):
        await payouts.retry(failed.payout_id)
    await _assert_paid_once(engine, fake)
    history = await payouts.list_payouts(owner_id="acme")
    assert [(p.attempt, p.state) for p in history] == [(1, "failed"), (2, "paid")]


async def test_the_remainder_is_paid_with_the_next_period(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger, fake: FakeStripe
) -> None:
    await _january(catalog, ledger, engine, fake)
    payouts = _payouts(engine, fake)
    await payouts.run("2026-01")
    feb_hit = hit(
        "feb",
        1,
        price=994_322,
        share_bps=10_000,
        owner_id="acme",
        dataset_id="ds-acme",
        licence_id="lic-acme",
        at=FEB,
    )
    await record(ledger, "feb", [feb_hit])
    await close_period(engine, "2026-02", now=datetime(2026, 3, 1, tzinfo=UTC))
    await payouts.run("2026-02")
    acme = sorted(t["amount"] for t in fake.transfers if t["destination"] == "acct_acme")
    assert acme == [100, 1_234]  # 5_678 carried + 994_322 = exactly 1.00 USD
    feb = await build_statement(engine, owner_id="acme", period="2026-02")
    assert (feb.carried_in_micros, feb.net_owner_micros, feb.payout_micros) == (
        5_678,
        994_322,
        1_000_000,
    )
    assert feb.carried_forward_micros == 0
    assert (await verify(engine)).ok


async def test_two_runs_at_once_pay_once(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger, fake: FakeStripe
) -> None:
    await _january(catalog, ledger, engine, fake)
    await asyncio.gather(
        _payouts(engine, fake).run("2026-01"), _payouts(engine, fake).run("2026-01")
    )
    await _assert_paid_once(engine, fake)


async def test_reconcile_reports_transfers_the_ledger_does_not_know(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger, fake: FakeStripe
) -> None:
    await _january(catalog, ledger, engine, fake)
    payouts = _payouts(engine, fake)
    await payouts.run("2026-01")
    gateway = StripeGateway(fake.api_key, api_base=fake.api_base)
    gateway.create_transfer(
        idempotency_key="manual-1",
        destination="acct_zeta",
        amount_minor=5,
        currency="USD",
        transfer_group="fairshare-2026-01",
        metadata={"payout_id": "po_2026-01_zeta_9"},
    )
    problems = await payouts.reconcile("2026-01")
    assert [(m.payout_id, m.problem) for m in problems] == [
        ("po_2026-01_zeta_9", "no such payout in the ledger")
    ]
