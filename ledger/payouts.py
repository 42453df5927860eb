"""Paying owners for closed periods: one transfer per owner and period, exactly once.

A payout is an append-only row plus its state events: pending -> submitted -> paid | failed.

1. **Plan** (under the ledger lock): for each owner without a payout for the period, what is due
   is their payable balance through the period (hits and reversals booked up to it) less every
   payout not failed. It is rounded down to the currency's minor unit; the remainder stays in the
   payable and is carried forward. Below the minimum, or without a Stripe account, nothing is paid
   and everything is carried forward.
2. **Submit**: record `submitted`, then ask the gateway for the transfer with the payout id as
   the idempotency key.
3. **Settle**: record `paid` with the transfer id, and book the payout in the journal (debit the
   owner's payable, credit the gateway) in the same transaction; or record `failed` with the
   gateway's reason when it refused.

A crash between any two steps leaves a state that a rerun finishes: `pending` is submitted,
`submitted` is looked up at the gateway (the transfer may exist: its idempotency key may have
expired, so we search by payout id before creating) and settled. Unique constraints make every
step happen once even when two runs race. A failed payout stays visible; `retry` makes a new
attempt (a new id, hence a new idempotency key) for what is due then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, insert, select, true
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts import ConflictError, InvalidInput, NotFound, Payout
from contracts.money import MINOR_UNITS
from ledger import chain
from ledger.db import ledger_transaction
from ledger.gateway import GatewayUnavailable, PayoutGateway, Transfer, TransferRejected
from ledger.journal import NewEntry, append
from ledger.periods import is_closed, parse_period
from ledger.schema import journal, owners, payout_events, payouts, postings

STATE_ORDER = {"pending": 0, "submitted": 1, "paid": 2, "failed": 2}
DEFAULT_MINIMUM_MICROS = 10_000_000  # 10 units of the owner's currency

# Called after each durable step with (payout_id, state reached). The CLI prints progress with
# it; the crash tests raise from it to stop a run between two steps.
StepHook = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class OwnerOutcome:
    owner_id: str
    payout: Payout | None
    note: str


@dataclass(frozen=True, slots=True)
class Mismatch:
    payout_id: str | None
    transfer_id: str | None
    problem: str


def transfer_group(period: str) -> str:
    return f"fairshare-{period}"


def payout_id_for(owner_id: str, period: str, attempt: int) -> str:
    return f"po_{period}_{owner_id}_{attempt}"


def round_to_minor(micros: int, currency: str) -> int:
    """The largest whole number of minor units (in micros) not above `micros`; 0 if negative."""
    step: int = 10 ** (6 - MINOR_UNITS[currency])
    return max(micros, 0) // step * step


def minor_units(micros: int, currency: str) -> int:
    step: int = 10 ** (6 - MINOR_UNITS[currency])
    if micros % step:
        raise InvalidInput(f"{micros} micros is not a whole number of {currency} minor units")
    return micros // step


class Payouts:
    def __init__(
        self,
        engine: AsyncEngine,
        gateway: PayoutGateway | None,
        *,
        minimum_micros: int = DEFAULT_MINIMUM_MICROS,
        on_step: StepHook | None = None,
    ) -> None:
        self._engine = engine
        self._gateway = gateway
        self._minimum = minimum_micros
        self._on_step = on_step or (lambda _payout_id, _state: None)

    # -- running -----------------------------------------------------------------------------

    async def run(self, period: str) -> list[OwnerOutcome]:
        """Plan, submit and settle every owner's payout for a closed period; resumable."""
        parse_period(period)
        if not await is_closed(self._engine, period):
            raise InvalidInput(f"period {period} is open: close it before paying it out")
        notes = await self._plan(period)
        for payout in await self.list_payouts(period=period):
            if payout.state in ("pending", "submitted"):
                notes[payout.owner_id] = await self._submit(payout)
        by_owner = {p.owner_id: p for p in await self.list_payouts(period=period, latest_only=True)}
        return [
            OwnerOutcome(owner_id, by_owner.get(owner_id), note)
            for owner_id, note in sorted(notes.items())
        ]

    async def retry(self, payout_id: str) -> OwnerOutcome:
        """A new attempt for a failed payout, for what is due now."""
        failed = await self.get(payout_id)
        if failed.state != "failed":
            raise ConflictError(
                f"payout {payout_id} is {failed.state}; only a failed payout can be retried",
                payout_id=payout_id,
            )
        async with ledger_transaction(self._engine) as conn:
            latest = await _latest_attempt(conn, failed.owner_id, failed.period)
            if latest != failed.attempt:
                raise ConflictError(
                    f"payout {payout_id} was already retried as attempt {latest}",
                    payout_id=payout_id,
                )
            planned, note = await self._plan_owner(
                conn, failed.owner_id, failed.period, failed.attempt + 1
            )
        if planned is None:
            return OwnerOutcome(failed.owner_id, failed, note)
        self._on_step(planned, "pending")
        note = await self._submit(await self.get(planned))
        return OwnerOutcome(failed.owner_id, await self.get(planned), note)

    async def _plan(self, period: str) -> dict[str, str]:
        notes: dict[str, str] = {}
        planned: list[str] = []
        async with ledger_transaction(self._engine) as conn:
            owner_ids = (await conn.execute(select(owners.c.id).order_by(owners.c.id))).scalars()
            for owner_id in list(owner_ids):
                latest = await _latest_attempt(conn, owner_id, period)
                if latest:
                    notes[owner_id] = "already planned"
                    continue
                payout_id, notes[owner_id] = await self._plan_owner(conn, owner_id, period, 1)
                if payout_id is not None:
                    planned.append(payout_id)
        for payout_id in planned:
            self._on_step(payout_id, "pending")
        return notes

    async def _plan_owner(
        self, conn: AsyncConnection, owner_id: str, period: str, attempt: int
    ) -> tuple[str | None, str]:
        owner = (await conn.execute(select(owners).where(owners.c.id == owner_id))).one()
        due = await owner_due(conn, owner_id, period)
        amount = round_to_minor(due, owner.currency)
        if amount <= 0 or amount < self._minimum:
            return None, f"{due} micros due is below the minimum; carried forward"
        if owner.stripe_account is None:
            return None, f"{due} micros due, but the owner has no Stripe account; carried forward"
        payout_id = payout_id_for(owner_id, period, attempt)
        now = datetime.now(UTC)
        await conn.execute(
            insert(payouts),
            {
                "payout_id": payout_id,
                "owner_id": owner_id,
                "period": period,
                "attempt": attempt,
                "currency": owner.currency,
                "amount_micros": amount,
                "destination": owner.stripe_account,
                "created_at": now,
            },
        )
        await conn.execute(
            insert(payout_events), {"payout_id": payout_id, "state": "pending", "created_at": now}
        )
        return payout_id, f"planned {amount} micros"

    async def _submit(self, payout: Payout) -> str:
        gateway = self._require_gateway()
        resuming = payout.state == "submitted"
        if payout.state == "pending":
            await self._add_event(payout.payout_id, "submitted")
            self._on_step(payout.payout_id, "submitted")
        try:
            transfer = None
            if resuming:
                transfer = await asyncio.to_thread(_find_transfer, gateway, payout)
            if transfer is None:
                transfer = await asyncio.to_thread(
                    gateway.create_transfer,
                    idempotency_key=payout.payout_id,
                    destination=payout.destination,
                    amount_minor=minor_units(payout.amount_micros, payout.currency),
                    currency=payout.currency,
                    transfer_group=transfer_group(payout.period),
                    metadata={
                        "payout_id": payout.payout_id,
                        "owner_id": payout.owner_id,
                        "period": payout.period,
                    },
                )
        except TransferRejected as exc:
            await self._add_event(payout.payout_id, "failed", failure=str(exc))
            self._on_step(payout.payout_id, "failed")
            return f"failed: {exc}"
        except GatewayUnavailable as exc:
            return f"outcome unknown ({exc}); still submitted, run again to finish"
        self._on_step(payout.payout_id, "transferred")
        _check_transfer(payout, transfer)
        await self._settle(payout, transfer)
        self._on_step(payout.payout_id, "paid")
        return f"paid by transfer {transfer.transfer_id}"

    async def _settle(self, payout: Payout, transfer: Transfer) -> None:
        async with ledger_transaction(self._engine) as conn:
            if await _has_event(conn, payout.payout_id, "paid"):
                return
            now = datetime.now(UTC)
            await conn.execute(
                insert(payout_events),
                {
                    "payout_id": payout.payout_id,
                    "state": "paid",
                    "transfer_id": transfer.transfer_id,
                    "created_at": now,
                },
            )
            await conn.run_sync(
                append,
                [
                    NewEntry(
                        kind=chain.KIND_PAYOUT,
                        currency=payout.currency,
                        created_at=now,
                        payout_id=payout.payout_id,
                        postings=chain.payout_postings(
                            owner_id=payout.owner_id,
                            currency=payout.currency,
                            amount=payout.amount_micros,
                        ),
                    )
                ],
            )

    async def _add_event(self, payout_id: str, state: str, *, failure: str | None = None) -> None:
        async with ledger_transaction(self._engine) as conn:
            if await _has_event(conn, payout_id, state):
                return  # a concurrent run got there first; the state is the same
            await conn.execute(
                insert(payout_events),
                {
                    "payout_id": payout_id,
                    "state": state,
                    "failure": failure,
                    "created_at": datetime.now(UTC),
                },
            )

    def _require_gateway(self) -> PayoutGateway:
        if self._gateway is None:
            raise InvalidInput("payouts need a gateway: set FAIRSHARE_STRIPE_API_KEY")
        return self._gateway

    # -- reading -----------------------------------------------------------------------------

    async def get(self, payout_id: str) -> Payout:
        found = await self._load(payouts.c.payout_id == payout_id)
        if not found:
            raise NotFound(f"payout {payout_id} does not exist", payout_id=payout_id)
        return found[0]

    async def list_payouts(
        self, *, period: str | None = None, owner_id: str | None = None, latest_only: bool = False
    ) -> list[Payout]:
        conditions = []
        if period is not None:
            parse_period(period)
            conditions.append(payouts.c.period == period)
        if owner_id is not None:
            conditions.append(payouts.c.owner_id == owner_id)
        found = await self._load(and_(true(), *conditions))
        if latest_only:
            newest: dict[tuple[str, str], Payout] = {}
            for p in found:
                newest[(p.owner_id, p.period)] = p  # ordered by attempt
            found = list(newest.values())
        return found

    async def _load(self, condition: Any) -> list[Payout]:
        async with self._engine.connect() as conn:
            return await load_payouts(conn, condition)

    # -- reconciliation ----------------------------------------------------------------------

    async def reconcile(self, period: str | None = None) -> list[Mismatch]:
        """Compare our payouts with the gateway's transfers; every disagreement, explained."""
        gateway = self._require_gateway()
        group = transfer_group(period) if period is not None else None
        transfers = await asyncio.to_thread(
            lambda: list(gateway.list_transfers(transfer_group=group))
        )
        ours = await self.list_payouts(period=period)
        return reconcile(ours, transfers)


def reconcile(ours: Sequence[Payout], transfers: Sequence[Transfer]) -> list[Mismatch]:
    by_payout: dict[str, list[Transfer]] = {}
    problems: list[Mismatch] = []
    for t in transfers:
        if t.payout_id is None:
            problems.append(
                Mismatch(None, t.transfer_id, "transfer not made by a Fairshare payout")
            )
            continue
        by_payout.setdefault(t.payout_id, []).append(t)
    known = {p.payout_id: p for p in ours}
    for payout_id, found in sorted(by_payout.items()):
        if payout_id not in known:
            for t in found:
                problems.append(Mismatch(payout_id, t.transfer_id, "no such payout in the ledger"))
        elif len(found) > 1:
            ids = ", ".join(t.transfer_id for t in found)
            problems.append(Mismatch(payout_id, None, f"paid by {len(found)} transfers: {ids}"))
    for p in ours:
        found = by_payout.get(p.payout_id, [])
        if p.state == "paid" and not found:
            problems.append(Mismatch(p.payout_id, p.transfer_id, "paid, but no transfer found"))
        elif p.state != "paid" and found:
            problems.append(
                Mismatch(
                    p.payout_id,
                    found[0].transfer_id,
                    f"a transfer exists but the payout is {p.state}; run payouts again to settle",
                )
            )
        for t in found:
            expected = (minor_units(p.amount_micros, p.currency), p.currency, p.destination)
            actual = (t.amount_minor, t.currency, t.destination)
            if expected != actual:
                problems.append(
                    Mismatch(
                        p.payout_id,
                        t.transfer_id,
                        f"transfer is {actual[0]} {actual[1]} to {actual[2]}, "
                        f"payout is {expected[0]} {expected[1]} to {expected[2]}",
                    )
                )
            if p.transfer_id is not None and t.transfer_id != p.transfer_id:
                problems.append(
                    Mismatch(p.payout_id, t.transfer_id, f"ledger names transfer {p.transfer_id}")
                )
    return problems


async def owner_due(conn: AsyncConnection, owner_id: str, through: str) -> int:
    """What the owner is owed for everything booked through `through`, less payouts not failed."""
    return await earned(conn, owner_id, journal.c.period <= through) - await committed_payouts(
        conn, owner_id
    )


async def earned(conn: AsyncConnection, owner_id: str, when: ColumnElement[bool]) -> int:
    """The owner's share of hits less reversals, booked in periods matching `when`."""
    total = (
        await conn.execute(
            select(func.coalesce(func.sum(postings.c.amount_micros), 0))
            .join_from(postings, journal, postings.c.seq == journal.c.seq)
            .where(
                postings.c.account_id == chain.owner_account(owner_id),
                journal.c.kind.in_((chain.KIND_HIT, chain.KIND_REVERSAL)),
                when,
            )
        )
    ).scalar_one()
    return -int(total)


async def committed_payouts(
    conn: AsyncConnection, owner_id: str, *, before_period: str | None = None
) -> int:
    """Sum of the owner's payouts that did not fail (paid, or still on their way)."""
    failed = select(payout_events.c.payout_id).where(payout_events.c.state == "failed")
    query = select(func.coalesce(func.sum(payouts.c.amount_micros), 0)).where(
        payouts.c.owner_id == owner_id, payouts.c.payout_id.not_in(failed)
    )
    if before_period is not None:
        query = query.where(payouts.c.period < before_period)
    return int((await conn.execute(query)).scalar_one())


async def load_payouts(conn: AsyncConnection, condition: Any) -> list[Payout]:
    rows = (
        await conn.execute(
            select(payouts)
            .where(condition)
            .order_by(payouts.c.period, payouts.c.owner_id, payouts.c.attempt)
        )
    ).all()
    if not rows:
        return []
    events = (
        await conn.execute(
            select(payout_events).where(payout_events.c.payout_id.in_([r.payout_id for r in rows]))
        )
    ).all()
    by_payout: dict[str, list[Any]] = {}
    for e in events:
        by_payout.setdefault(e.payout_id, []).append(e)
    result = []
    for r in rows:
        history = sorted(by_payout.get(r.payout_id, []), key=lambda e: STATE_ORDER[e.state])
        last = history[-1]
        paid = next((e for e in history if e.state == "paid"), None)
        failed = next((e for e in history if e.state == "failed"), None)
        result.append(
            Payout(
                payout_id=r.payout_id,
                owner_id=r.owner_id,
                period=r.period,
                attempt=r.attempt,
                currency=r.currency,
                amount_micros=r.amount_micros,
                destination=r.destination,
                state=last.state,
                transfer_id=paid.transfer_id if paid is not None else None,
                failure=failed.failure if failed is not None else None,
                created_at=r.created_at,
                updated_at=last.created_at,
            )
        )
    return result


async def _latest_attempt(conn: AsyncConnection, owner_id: str, period: str) -> int:
    found = await conn.execute(
        select(func.max(payouts.c.attempt)).where(
            payouts.c.owner_id == owner_id, payouts.c.period == period
        )
    )
    return int(found.scalar_one() or 0)


async def _has_event(conn: AsyncConnection, payout_id: str, state: str) -> bool:
    found = await conn.execute(
        select(payout_events.c.state).where(
            payout_events.c.payout_id == payout_id, payout_events.c.state == state
        )
    )
    return found.first() is not None


def _find_transfer(gateway: PayoutGateway, payout: Payout) -> Transfer | None:
    for t in gateway.list_transfers(transfer_group=transfer_group(payout.period)):
        if t.payout_id == payout.payout_id:
            return t
    return None


def _check_transfer(payout: Payout, transfer: Transfer) -> None:
    expected = (minor_units(payout.amount_micros, payout.currency), payout.currency)
    if (transfer.amount_minor, transfer.currency) != expected:
        # Never book a transfer that is not what we asked for; an operator must look.
        raise ConflictError(
            f"gateway transfer {transfer.transfer_id} is {transfer.amount_minor} "
            f"{transfer.currency}, payout {payout.payout_id} asked for {expected[0]} {expected[1]}",
            payout_id=payout.payout_id,
        )
