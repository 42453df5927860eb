"""Accounting periods: calendar months (UTC), closed in order, never reopened.

A journal entry is booked in the month of its timestamp unless that month is already closed, in
which case it goes to the first open month after the last closed one: a hit that arrives after
`fairshare periods close 2026-11` belongs to 2026-12, even if it was served at 23:59 on Nov 30.
Closing takes the ledger lock, so a hit is either committed before the close (and in the month) or
after it (and in the next one), never lost between them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts import ConflictError, InvalidInput
from ledger.db import ledger_transaction
from ledger.schema import journal, periods

_PERIOD = re.compile(r"(\d{4})-(\d{2})")


def parse_period(period: str) -> tuple[int, int]:
    """(year, month) of a "YYYY-MM" period; InvalidInput for anything else."""
    match = _PERIOD.fullmatch(period)
    if match is None or not 1 <= int(match[2]) <= 12 or not 1 <= int(match[1]) <= 9998:
        raise InvalidInput(f"period must be YYYY-MM with a month 01..12, got {period!r}")
    return int(match[1]), int(match[2])


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """[start, end) in UTC of a period."""
    year, month = parse_period(period)
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def month_of(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m")


def next_period(period: str) -> str:
    year, month = parse_period(period)
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def previous_period(period: str) -> str:
    year, month = parse_period(period)
    return f"{year - 1:04d}-12" if month == 1 else f"{year:04d}-{month - 1:02d}"


def booking_period(at: datetime, last_closed: str | None) -> str:
    """The period an entry made at `at` is booked in, given the last closed period."""
    month = month_of(at)
    if last_closed is not None and month <= last_closed:
        return next_period(last_closed)
    return month


async def last_closed_period(conn: AsyncConnection) -> str | None:
    last: str | None = (await conn.execute(select(func.max(periods.c.period)))).scalar_one()
    return last


async def is_closed(engine: AsyncEngine, period: str) -> bool:
    """Whether no entry can be booked in `period` any more: it is at or before the last close."""
    parse_period(period)
    async with engine.connect() as conn:
        last = await last_closed_period(conn)
    return last is not None and period <= last


async def closed_periods(engine: AsyncEngine) -> list[tuple[str, datetime]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(periods).order_by(periods.c.period))
        return [(r.period, r.closed_at) for r in rows]


async def close_period(engine: AsyncEngine, period: str, *, now: datetime | None = None) -> bool:
    """Close `period`; True if this call closed it, False if it was already closed.

    Refused for a month that has not started, and while an earlier month with entries is open
    (periods close in order, so every entry lands in exactly one closed month eventually).
    """
    now = now or datetime.now(UTC)
    parse_period(period)
    if period > month_of(now):
        raise InvalidInput(f"period {period} has not started yet; it cannot be closed")
    async with ledger_transaction(engine) as conn:
        last = await last_closed_period(conn)
        if last is not None and period <= last:
            return False
        earlier = select(func.min(journal.c.period)).where(journal.c.period < period)
        if last is not None:
            earlier = earlier.where(journal.c.period > last)
        open_before = (await conn.execute(earlier)).scalar_one_or_none()
        if open_before is not None:
            raise ConflictError(
                f"period {open_before} has entries and is still open; close it before {period}",
                period=open_before,
            )
        await conn.execute(insert(periods), {"period": period, "closed_at": now})
    return True
