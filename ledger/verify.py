"""`fairshare ledger verify`: recompute the hash chain and the balances from the raw rows.

Walks the journal in `seq` order, a page at a time, and checks for every transaction that
- its `seq` follows the previous one and its `prev_hash` is the previous `hash`;
- its `hash` matches its content, postings and (for a hit) the hit row, so no row was edited;
- its postings sum to zero, in accounts of its own currency;
- a hit posts exactly its price and split, a reversal exactly negates what it reverses, a payout
  moves exactly the payout's amount from the owner to the gateway.
Then the balances of all accounts, derived from postings, must sum to zero per currency.
The first broken link is reported by `seq`; later problems are listed too, up to a limit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import chain
from ledger.schema import accounts, hits, journal, payouts, postings

PAGE = 5_000
MAX_PROBLEMS = 50


class Balance(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    currency: str
    balance_micros: int  # debits minus credits


class VerifyReport(msgspec.Struct, kw_only=True):
    entries: int = 0
    head_seq: int = 0
    head_hash: str = chain.GENESIS_HASH
    first_broken_seq: int | None = None
    problems: list[str] = msgspec.field(default_factory=list)
    balances: list[Balance] = msgspec.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, seq: int | None, problem: str) -> None:
        if seq is not None and self.first_broken_seq is None:
            self.first_broken_seq = seq
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(f"seq {seq}: {problem}" if seq is not None else problem)


async def verify(engine: AsyncEngine) -> VerifyReport:
    report = VerifyReport()
    async with engine.connect() as conn:
        currencies = {r.id: r.currency for r in await conn.execute(select(accounts))}
        prev_seq, prev_hash = 0, chain.GENESIS_HASH
        while True:
            page = (
                await conn.execute(
                    select(journal)
                    .where(journal.c.seq > prev_seq)
                    .order_by(journal.c.seq)
                    .limit(PAGE)
                )
            ).all()
            if not page:
                break
            prev_seq, prev_hash = await _check_page(
                conn, page, prev_seq, prev_hash, currencies, report
            )
        report.head_seq, report.head_hash = prev_seq, prev_hash
        report.balances = await balances(conn)
    totals: dict[str, int] = defaultdict(int)
    for b in report.balances:
        totals[b.currency] += b.balance_micros
    for currency, total in sorted(totals.items()):
        if total != 0:
            report.fail(None, f"{currency} balances sum to {total}, not 0")
    return report


async def balances(conn: AsyncConnection) -> list[Balance]:
    """Every account's balance, derived from its postings (never stored)."""
    rows = await conn.execute(
        select(
            accounts.c.id,
            accounts.c.currency,
            func.coalesce(func.sum(postings.c.amount_micros), 0).label("balance"),
        )
        .outerjoin(postings, postings.c.account_id == accounts.c.id)
        .group_by(accounts.c.id, accounts.c.currency)
        .order_by(accounts.c.id)
    )
    return [
        Balance(account_id=r.id, currency=r.currency, balance_micros=int(r.balance)) for r in rows
    ]


async def _check_page(
    conn: AsyncConnection,
    page: Sequence[Any],
    prev_seq: int,
    prev_hash: str,
    currencies: dict[str, str],
    report: VerifyReport,
) -> tuple[int, str]:
    first, last = page[0].seq, page[-1].seq
    posted: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for p in await conn.execute(select(postings).where(postings.c.seq.between(first, last))):
        posted[p.seq].append((p.account_id, int(p.amount_micros)))
    hit_rows = {
        h.seq: h for h in await conn.execute(select(hits).where(hits.c.seq.between(first, last)))
    }
    reversed_seqs = [e.reverses_seq for e in page if e.reverses_seq is not None]
    originals: dict[int, list[tuple[str, int]]] = defaultdict(list)
    if reversed_seqs:
        for p in await conn.execute(select(postings).where(postings.c.seq.in_(reversed_seqs))):
            originals[p.seq].append((p.account_id, int(p.amount_micros)))
    payout_ids = [e.payout_id for e in page if e.payout_id is not None]
    payout_rows = {
        r.payout_id: r
        for r in (
            await conn.execute(select(payouts).where(payouts.c.payout_id.in_(payout_ids)))
            if payout_ids
            else []
        )
    }
    for e in page:
        report.entries += 1
        seq = int(e.seq)
        entry_postings = posted.get(seq, [])
        hit = hit_rows.get(seq)
        if seq != prev_seq + 1:
            report.fail(seq, f"follows seq {prev_seq}: transactions are missing")
        if e.prev_hash != prev_hash:
            report.fail(seq, "prev_hash does not match the previous transaction's hash")
        fields = None if hit is None else {k: getattr(hit, k) for k in chain.HIT_HASHED_FIELDS}
        digest = chain.entry_hash(
            e.prev_hash,
            seq=seq,
            kind=e.kind,
            currency=e.currency,
            period=e.period,
            created_at=e.created_at,
            query_id=e.query_id,
            reverses_seq=e.reverses_seq,
            reason=e.reason,
            payout_id=e.payout_id,
            postings=entry_postings,
            hit=fields,
            reference=e.reference,
        )
        if digest != e.hash:
            report.fail(
                seq,
                "hash does not match its content: the row, its postings or its hit were changed",
            )
        if sum(a for _, a in entry_postings) != 0:
            report.fail(seq, f"postings sum to {sum(a for _, a in entry_postings)}, not 0")
        for account, _ in entry_postings:
            if currencies.get(account) != e.currency:
                report.fail(seq, f"posts to {account} ({currencies.get(account)}) in {e.currency}")
        expected = _expected_postings(e, entry_postings, hit, originals, payout_rows)
        if expected is not None and sorted(expected) != sorted(entry_postings):
            report.fail(
                seq, f"{e.kind} posts {sorted(entry_postings)}, expected {sorted(expected)}"
            )
        prev_seq, prev_hash = seq, e.hash
    return prev_seq, prev_hash


def _expected_postings(
    e: Any,
    posted: list[tuple[str, int]],
    hit: Any,
    originals: dict[int, list[tuple[str, int]]],
    payout_rows: dict[str, Any],
) -> list[tuple[str, int]] | None:
    if e.kind == chain.KIND_HIT:
        if hit is None:
            return [("<a hit row>", 0)]
        return chain.hit_postings(
            customer_id=hit.customer_id,
            owner_id=hit.owner_id,
            currency=hit.currency,
            price=hit.price_micros,
            owner=hit.owner_micros,
            platform=hit.platform_micros,
        )
    if e.kind == chain.KIND_REVERSAL:
        return chain.reversed_postings(originals.get(e.reverses_seq, []))
    if e.kind == chain.KIND_TOPUP:
        customers = [a for a, _ in posted if chain.account_kind(a) == "customer"]
        received = sum(m for a, m in posted if chain.account_kind(a) == "gateway")
        if len(customers) != 1 or received <= 0:
            return [("<one customer credit and one gateway debit>", 0)]
        return chain.topup_postings(
            customer_id=customers[0].split(":", 1)[1], currency=e.currency, amount=received
        )
    if e.kind == chain.KIND_PAYOUT:
        payout = payout_rows.get(e.payout_id)
        if payout is None:
            return [("<a payout row>", 0)]
        return chain.payout_postings(
            owner_id=payout.owner_id, currency=payout.currency, amount=payout.amount_micros
        )
    return None
