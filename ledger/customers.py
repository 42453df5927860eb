"""Customers' money: prepaid top-ups, credit limits, and the balance a search may spend.

A customer's balance is derived from their account's postings: top-ups credit it, hits debit it,
reversals give it back. `credit_limit_micros` says how far below zero it may go: NULL means no
limit (an invoiced customer), 0 means strictly prepaid. The check that a search can be paid for
happens in `ledger.hits` under the ledger lock, in the same transaction as the charge, so two
concurrent searches can never both spend the last of a balance.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import msgspec
from sqlalchemy import Connection, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import ConflictError, InvalidInput, NotFound
from contracts.views import CustomerBalance
from ledger import chain
from ledger.db import ledger_transaction, write_transaction
from ledger.journal import NewEntry, append
from ledger.schema import customers, journal, postings

MAX_TOPUP_MICROS = 10**15


class Topup(msgspec.Struct, frozen=True, kw_only=True):
    customer_id: str
    amount_micros: int
    currency: str
    reference: str
    seq: int
    balance: CustomerBalance


def balances_of(conn: Connection, customer_ids: Iterable[str]) -> dict[str, int]:
    """Customer id -> balance (credits less debits on their account)."""
    accounts = {chain.customer_account(c): c for c in customer_ids}
    rows = conn.execute(
        select(postings.c.account_id, func.sum(postings.c.amount_micros))
        .where(postings.c.account_id.in_(list(accounts)))
        .group_by(postings.c.account_id)
    )
    found = {accounts[account]: -int(total) for account, total in rows}
    return {c: found.get(c, 0) for c in accounts.values()}


def credit_limits(conn: Connection, customer_ids: Iterable[str]) -> dict[str, int | None]:
    rows = conn.execute(
        select(customers.c.id, customers.c.credit_limit_micros).where(
            customers.c.id.in_(list(customer_ids))
        )
    )
    return {r.id: r.credit_limit_micros for r in rows}


class CustomerAccounts:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def resolve(self, name_or_id: str) -> tuple[str, str]:
        """(customer id, currency) of a customer named by id or by name."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(customers.c.id, customers.c.currency).where(
                        (customers.c.id == name_or_id) | (customers.c.name == name_or_id)
                    )
                )
            ).first()
        if row is None:
            raise NotFound(f"customer {name_or_id!r} does not exist", customer=name_or_id)
        return str(row.id), str(row.currency)

    async def balance(self, customer_id: str) -> CustomerBalance:
        customer_id, currency = await self.resolve(customer_id)
        async with self._engine.connect() as conn:
            balance = (await conn.run_sync(balances_of, [customer_id]))[customer_id]
            limit = (await conn.run_sync(credit_limits, [customer_id]))[customer_id]
        return _balance(customer_id, currency, balance, limit)

    async def topup(
        self, customer: str, *, amount_micros: int, reference: str, now: datetime | None = None
    ) -> Topup:
        """Credit a prepaid top-up once per `reference` (e.g. the payment's id at the gateway).

        The same reference with the same amount returns the original top-up; with another
        amount, or for another customer, it is a conflict.
        """
        if not 0 < amount_micros <= MAX_TOPUP_MICROS:
            raise InvalidInput(f"amount_micros must be within 1..{MAX_TOPUP_MICROS}")
        if not 1 <= len(reference) <= 255 or not reference.isprintable():
            raise InvalidInput("reference must be 1..255 printable characters")
        customer_id, currency = await self.resolve(customer)
        async with ledger_transaction(self._engine) as conn:
            existing = (
                await conn.execute(
                    select(journal.c.seq, postings.c.account_id, postings.c.amount_micros)
                    .join_from(journal, postings, journal.c.seq == postings.c.seq)
                    .where(journal.c.reference == reference)
                )
            ).all()
            if existing:
                seq = int(existing[0].seq)
                credited = {r.account_id: -int(r.amount_micros) for r in existing}
                if credited.get(chain.customer_account(customer_id)) != amount_micros:
                    raise ConflictError(
                        f"top-up reference {reference!r} was already used for another amount "
                        "or customer",
                        reference=reference,
                    )
            else:
                [booked] = await conn.run_sync(
                    append,
                    [
                        NewEntry(
                            kind=chain.KIND_TOPUP,
                            currency=currency,
                            created_at=now or datetime.now(UTC),
                            reference=reference,
                            postings=chain.topup_postings(
                                customer_id=customer_id, currency=currency, amount=amount_micros
                            ),
                        )
                    ],
                )
                seq = booked.seq
        return Topup(
            customer_id=customer_id,
            amount_micros=amount_micros,
            currency=currency,
            reference=reference,
            seq=seq,
            balance=await self.balance(customer_id),
        )

    async def set_credit_limit(self, customer: str, limit_micros: int | None) -> CustomerBalance:
        """None: no limit; 0: strictly prepaid; N: may owe up to N micros."""
        if limit_micros is not None and not 0 <= limit_micros <= MAX_TOPUP_MICROS:
            raise InvalidInput(f"credit limit must be within 0..{MAX_TOPUP_MICROS} micros")
        customer_id, _ = await self.resolve(customer)
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                update(customers)
                .where(customers.c.id == customer_id)
                .values(credit_limit_micros=limit_micros)
            )
        return await self.balance(customer_id)

    async def set_territory(self, customer: str, territory: str | None) -> str | None:
        """Where the customer is (ISO 3166-1 alpha-2), which licences' territories are checked
        against; None: unknown, so only licences without a territory list serve it."""
        if territory is not None and not (
            len(territory) == 2 and territory.isascii() and territory.isalpha()
        ):
            raise InvalidInput(
                f"territory must be an ISO 3166-1 alpha-2 code such as SG or DE, not {territory!r}"
            )
        code = None if territory is None else territory.upper()
        customer_id, _ = await self.resolve(customer)
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                update(customers).where(customers.c.id == customer_id).values(territory=code)
            )
        return code


def _balance(customer_id: str, currency: str, balance: int, limit: int | None) -> CustomerBalance:
    return CustomerBalance(
        customer_id=customer_id,
        currency=currency,
        balance_micros=balance,
        credit_limit_micros=limit,
        available_micros=None if limit is None else balance + limit,
    )
