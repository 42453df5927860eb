"""Corrections: a hit is never edited or deleted, it is reversed by a new transaction.

A reversal posts the exact negation of the hit's postings (the customer is refunded the price, the
owner's payable and the platform's revenue give back their shares), carries a reason code, and is
booked in the current open period: a closed month stays as it was stated and paid, and the
correction shows on the next statement. Each hit can be reversed once (a unique constraint on
`reverses_seq`); asking again returns the reversal already made.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import aliased

from contracts import InvalidInput, NotFound
from contracts.ledger import REVERSAL_REASONS, ReversalReason
from ledger import chain
from ledger.db import ledger_transaction
from ledger.journal import NewEntry, append
from ledger.schema import hits, journal, postings


class ReversedHit(msgspec.Struct, frozen=True, kw_only=True):
    rank: int
    hit_seq: int
    reversal_seq: int
    reason: str
    price_micros: int
    owner_micros: int
    platform_micros: int
    period: str  # where the reversal is booked


class Reversal(msgspec.Struct, frozen=True, kw_only=True):
    query_id: str
    currency: str
    refunded_micros: int
    hits: list[ReversedHit]


async def reverse_query(
    engine: AsyncEngine,
    query_id: str,
    *,
    reason: str,
    rank: int | None = None,
    now: datetime | None = None,
) -> Reversal:
    """Reverse every hit of `query_id` (or only the one at `rank`) not reversed yet."""
    if reason not in REVERSAL_REASONS:
        raise InvalidInput(
            f"unknown reversal reason {reason!r}; use one of {', '.join(REVERSAL_REASONS)}",
            reason=reason,
        )
    code: ReversalReason = reason  # type: ignore[assignment]
    now = now or datetime.now(UTC)
    later = aliased(journal)
    query = (
        select(
            hits.c.rank,
            hits.c.seq,
            hits.c.currency,
            hits.c.price_micros,
            hits.c.owner_micros,
            hits.c.platform_micros,
            later.c.seq.label("reversal_seq"),
            later.c.reason,
            later.c.period,
        )
        .outerjoin(later, later.c.reverses_seq == hits.c.seq)
        .where(hits.c.query_id == query_id)
        .order_by(hits.c.rank)
    )
    if rank is not None:
        query = query.where(hits.c.rank == rank)
    async with ledger_transaction(engine) as conn:
        rows = (await conn.execute(query)).all()
        if not rows:
            what = f"query {query_id}" + (f" has no hit at rank {rank}" if rank else " has no hits")
            raise NotFound(what, query_id=query_id)
        todo = [r for r in rows if r.reversal_seq is None]
        originals: dict[int, list[tuple[str, int]]] = {}
        if todo:
            found = await conn.execute(
                select(postings.c.seq, postings.c.account_id, postings.c.amount_micros).where(
                    postings.c.seq.in_([r.seq for r in todo])
                )
            )
            for p in found:
                originals.setdefault(p.seq, []).append((p.account_id, p.amount_micros))
        booked = await conn.run_sync(
            append,
            [
                NewEntry(
                    kind=chain.KIND_REVERSAL,
                    currency=r.currency,
                    created_at=now,
                    query_id=query_id,
                    reverses_seq=r.seq,
                    reason=code,
                    postings=chain.reversed_postings(originals[r.seq]),
                )
                for r in todo
            ],
        )
    made = {b.entry.reverses_seq: b for b in booked}
    result = []
    for r in rows:
        fresh = made.get(r.seq)
        result.append(
            ReversedHit(
                rank=r.rank,
                hit_seq=r.seq,
                reversal_seq=fresh.seq if fresh is not None else r.reversal_seq,
                reason=code if fresh is not None else r.reason,
                price_micros=r.price_micros,
                owner_micros=r.owner_micros,
                platform_micros=r.platform_micros,
                period=fresh.period if fresh is not None else r.period,
            )
        )
    return Reversal(
        query_id=query_id,
        currency=rows[0].currency,
        refunded_micros=sum(h.price_micros for h in result),
        hits=result,
    )
