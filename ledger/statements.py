"""Owner statements: what one accounting period earned, and what was paid, from the journal.

Figures come from booked transactions (`journal.period`), not timestamps, so a statement agrees
with the payout made for the same period. Hits are summed from the hit rows (one per delivered
passage); reversals from the owner's postings. A statement for an open period is provisional.
Rendering (CSV, HTML, PDF) lives in `ledger.statement_formats`.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts import (
    DatasetLine,
    DayLine,
    DocumentLine,
    LicenceTerms,
    NotFound,
    RegionLine,
    Statement,
)
from ledger import chain
from ledger.payouts import committed_payouts, earned, load_payouts
from ledger.periods import last_closed_period, period_bounds
from ledger.schema import datasets, documents, hits, journal, licences, owners, payouts, postings

TOP_DOCUMENTS = 20


async def build_statement(engine: AsyncEngine, *, owner_id: str, period: str) -> Statement:
    """The owner's statement for `period`; NotFound for an unknown owner."""
    start, end = period_bounds(period)
    async with engine.connect() as conn:
        owner = (
            await conn.execute(
                select(owners.c.name, owners.c.currency).where(owners.c.id == owner_id)
            )
        ).first()
        if owner is None:
            raise NotFound(f"owner {owner_id} does not exist", owner_id=owner_id)
        in_period = (hits.c.owner_id == owner_id, journal.c.period == period)
        lines = await _dataset_lines(conn, in_period)
        regions = await _region_lines(conn, in_period)
        docs = await _document_lines(conn, in_period)
        days = await _day_lines(conn, in_period, start.date(), end.date())
        terms = await _licences({line.licence_id for line in lines}, conn)
        reversal_count, reversed_owner = await _reversals(conn, owner_id, period)
        earned_before = await earned(conn, owner_id, journal.c.period < period)
        paid_before = await committed_payouts(conn, owner_id, before_period=period)
        attempts = await load_payouts(
            conn, (payouts.c.owner_id == owner_id) & (payouts.c.period == period)
        )
        last_closed = await last_closed_period(conn)
    payout = attempts[-1] if attempts else None
    owner_micros = sum(x.owner_micros for x in lines)
    net = owner_micros - reversed_owner
    carried_in = earned_before - paid_before
    payable = carried_in + net
    paid_now = payout.amount_micros if payout is not None and payout.state != "failed" else 0
    return Statement(
        owner_id=owner_id,
        owner_name=owner.name,
        period=period,
        currency=owner.currency,
        closed=last_closed is not None and period <= last_closed,
        hit_count=sum(x.hit_count for x in lines),
        gross_micros=sum(x.gross_micros for x in lines),
        owner_micros=owner_micros,
        platform_micros=sum(x.platform_micros for x in lines),
        reversal_count=reversal_count,
        reversed_owner_micros=reversed_owner,
        net_owner_micros=net,
        carried_in_micros=carried_in,
        payable_micros=payable,
        payout_micros=paid_now,
        carried_forward_micros=payable - paid_now,
        payout=payout,
        datasets=lines,
        documents=docs,
        days=days,
        licences=terms,
        regions=regions,
    )


def _hits_in(*where: ColumnElement[bool]) -> Any:
    return select().select_from(hits.join(journal, hits.c.seq == journal.c.seq)).where(*where)


async def _dataset_lines(
    conn: AsyncConnection, where: tuple[ColumnElement[bool], ...]
) -> list[DatasetLine]:
    query = (
        _hits_in(*where)
        .add_columns(
            hits.c.dataset_id,
            func.coalesce(func.max(datasets.c.name), hits.c.dataset_id).label("name"),
            hits.c.licence_id,
            func.count().label("n"),
            func.sum(hits.c.price_micros).label("gross"),
            func.sum(hits.c.owner_micros).label("owner"),
            func.sum(hits.c.platform_micros).label("platform"),
        )
        .outerjoin(datasets, datasets.c.id == hits.c.dataset_id)
        .group_by(hits.c.dataset_id, hits.c.licence_id)
    )
    # int(): PostgreSQL's SUM(bigint) is NUMERIC (a Decimal), exact but not an int.
    lines = [
        DatasetLine(
            dataset_id=r.dataset_id,
            dataset_name=r.name,
            licence_id=r.licence_id,
            hit_count=int(r.n),
            gross_micros=int(r.gross),
            owner_micros=int(r.owner),
            platform_micros=int(r.platform),
        )
        for r in await conn.execute(query)
    ]
    return sorted(lines, key=lambda x: (-x.gross_micros, x.dataset_id, x.licence_id))


async def _region_lines(
    conn: AsyncConnection, where: tuple[ColumnElement[bool], ...]
) -> list[RegionLine]:
    query = (
        _hits_in(*where)
        .add_columns(
            hits.c.region,
            func.count().label("n"),
            func.sum(hits.c.price_micros).label("gross"),
            func.sum(hits.c.owner_micros).label("owner"),
            func.sum(hits.c.platform_micros).label("platform"),
        )
        .group_by(hits.c.region)
    )
    lines = [
        RegionLine(
            region=r.region,
            hit_count=int(r.n),
            gross_micros=int(r.gross),
            owner_micros=int(r.owner),
            platform_micros=int(r.platform),
        )
        for r in await conn.execute(query)
    ]
    return sorted(lines, key=lambda x: (-x.gross_micros, x.region or ""))


async def _document_lines(
    conn: AsyncConnection, where: tuple[ColumnElement[bool], ...]
) -> list[DocumentLine]:
    gross = func.sum(hits.c.price_micros)
    query = (
        _hits_in(*where)
        .add_columns(
            hits.c.dataset_id,
            hits.c.document_id,
            func.coalesce(func.max(documents.c.title), "").label("title"),
            func.count().label("n"),
            gross.label("gross"),
            func.sum(hits.c.owner_micros).label("owner"),
        )
        .outerjoin(
            documents,
            (documents.c.dataset_id == hits.c.dataset_id) & (documents.c.id == hits.c.document_id),
        )
        .group_by(hits.c.dataset_id, hits.c.document_id)
        .order_by(gross.desc(), func.count().desc(), hits.c.dataset_id, hits.c.document_id)
        .limit(TOP_DOCUMENTS)
    )
    return [
        DocumentLine(
            dataset_id=r.dataset_id,
            document_id=r.document_id,
            title=r.title,
            hit_count=int(r.n),
            gross_micros=int(r.gross),
            owner_micros=int(r.owner),
        )
        for r in await conn.execute(query)
    ]


async def _day_lines(
    conn: AsyncConnection, where: tuple[ColumnElement[bool], ...], start: date, end: date
) -> list[DayLine]:
    """Every day of the period, zeros included, plus any day outside it that holds hits booked
    here (a hit served on the last evening of a month closed before it was recorded)."""
    if conn.dialect.name == "postgresql":
        day = func.to_char(func.timezone("UTC", hits.c.created_at), "YYYY-MM-DD")
    else:
        day = func.substr(hits.c.created_at, 1, 10)  # stored as "YYYY-MM-DD HH:MM:SS" in UTC
    query = (
        _hits_in(*where)
        .add_columns(
            day.label("day"),
            func.count().label("n"),
            func.sum(hits.c.price_micros).label("gross"),
            func.sum(hits.c.owner_micros).label("owner"),
        )
        .group_by(day)
    )
    found = {r.day: r for r in await conn.execute(query)}
    every = {(start + timedelta(days=n)).isoformat() for n in range((end - start).days)}
    return [
        DayLine(
            day=d,
            hit_count=int(found[d].n) if d in found else 0,
            gross_micros=int(found[d].gross) if d in found else 0,
            owner_micros=int(found[d].owner) if d in found else 0,
        )
        for d in sorted(every | set(found))
    ]


async def _licences(ids: set[str], conn: AsyncConnection) -> list[LicenceTerms]:
    if not ids:
        return []
    rows = await conn.execute(select(licences).where(licences.c.id.in_(sorted(ids))))
    return [
        LicenceTerms(
            licence_id=r.id,
            name=r.name,
            currency=r.currency,
            price_per_hit_micros=r.price_per_hit_micros,
            owner_share_bps=r.owner_share_bps,
            snippet_cap_chars=r.snippet_cap_chars,
            attribution=r.attribution,
        )
        for r in sorted(rows, key=lambda r: r.id)
    ]


async def _reversals(conn: AsyncConnection, owner_id: str, period: str) -> tuple[int, int]:
    """(count, owner micros taken back) of reversals booked in the period."""
    row = (
        await conn.execute(
            select(func.count(), func.coalesce(func.sum(postings.c.amount_micros), 0))
            .join_from(postings, journal, postings.c.seq == journal.c.seq)
            .where(
                postings.c.account_id == chain.owner_account(owner_id),
                journal.c.kind == chain.KIND_REVERSAL,
                journal.c.period == period,
            )
        )
    ).one()
    return int(row[0]), int(row[1])
