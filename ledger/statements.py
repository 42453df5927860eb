"""Owner statements: hits and earnings for one UTC calendar month, summed in SQL.

A statement line is one (dataset, licence) pair: when a dataset changes licence mid-month, its hits
under each licence stay on separate lines, each naming the terms that priced them. Datasets without
hits in the period have no line (a statement lists what was earned, not the catalog).
"""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import DatasetLine, FairshareError, InvalidInput, NotFound, Statement
from contracts.money import MICROS_PER_UNIT, MINOR_UNITS
from ledger.schema import datasets, hits, owners

_PERIOD = re.compile(r"(\d{4})-(\d{2})")
CSV_HEADER = (
    "owner_id",
    "period",
    "currency",
    "dataset_id",
    "dataset_name",
    "licence_id",
    "hit_count",
    "gross_micros",
    "owner_micros",
    "platform_micros",
)


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """[start, end) in UTC of a "YYYY-MM" period; InvalidInput for anything else."""
    match = _PERIOD.fullmatch(period)
    if match is None or not 1 <= int(match[2]) <= 12 or int(match[1]) < 1:
        raise InvalidInput(f"period must be YYYY-MM with a month 01..12, got {period!r}")
    year, month = int(match[1]), int(match[2])
    start = datetime(year, month, 1, tzinfo=UTC)
    if year == 9999 and month == 12:
        raise InvalidInput(f"period {period} is out of range")
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


async def build_statement(engine: AsyncEngine, *, owner_id: str, period: str) -> Statement:
    """The owner's statement for `period`; NotFound for an unknown owner."""
    start, end = period_bounds(period)
    query = (
        select(
            hits.c.dataset_id,
            datasets.c.name,
            hits.c.licence_id,
            hits.c.currency,
            func.count().label("hit_count"),
            func.sum(hits.c.price_micros).label("gross"),
            func.sum(hits.c.owner_micros).label("owner"),
            func.sum(hits.c.platform_micros).label("platform"),
        )
        .join_from(hits, datasets, hits.c.dataset_id == datasets.c.id)
        .where(hits.c.owner_id == owner_id, hits.c.created_at >= start, hits.c.created_at < end)
        .group_by(hits.c.dataset_id, datasets.c.name, hits.c.licence_id, hits.c.currency)
    )
    async with engine.connect() as conn:
        owner = (
            await conn.execute(
                select(owners.c.name, owners.c.currency).where(owners.c.id == owner_id)
            )
        ).first()
        if owner is None:
            raise NotFound(f"owner {owner_id} does not exist", owner_id=owner_id)
        rows = (await conn.execute(query)).all()
    lines: list[DatasetLine] = []
    for r in rows:
        if r.currency != owner.currency:
            # add_dataset forbids this; summing two currencies would silently misstate earnings.
            raise FairshareError(
                f"owner {owner_id} has hits in {r.currency} but is paid in {owner.currency}"
            )
        # int(): PostgreSQL's SUM(bigint) is NUMERIC (a Decimal), exact but not an int.
        lines.append(
            DatasetLine(
                dataset_id=r.dataset_id,
                dataset_name=r.name,
                licence_id=r.licence_id,
                hit_count=int(r.hit_count),
                gross_micros=int(r.gross),
                owner_micros=int(r.owner),
                platform_micros=int(r.platform),
            )
        )
    lines.sort(key=lambda x: (-x.gross_micros, x.dataset_id, x.licence_id))
    return Statement(
        owner_id=owner_id,
        owner_name=owner.name,
        period=period,
        currency=owner.currency,
        hit_count=sum(x.hit_count for x in lines),
        gross_micros=sum(x.gross_micros for x in lines),
        owner_micros=sum(x.owner_micros for x in lines),
        platform_micros=sum(x.platform_micros for x in lines),
        datasets=lines,
    )


def format_units(micros: int, currency: str) -> str:
    """Exact decimal amount from micros, no floats: at least the currency's minor-unit digits,
    more only when sub-minor micros are present (1_333_000 USD -> "1.333", 1_000_000 -> "1.00")."""
    sign = "-" if micros < 0 else ""
    units, frac = divmod(abs(micros), MICROS_PER_UNIT)
    digits = f"{frac:06d}".rstrip("0")
    digits = digits.ljust(MINOR_UNITS.get(currency, 2), "0")
    return f"{sign}{units:,}" + (f".{digits}" if digits else "")


def statement_csv(s: Statement) -> str:
    """One row per statement line plus a TOTAL row; amounts in integer micros."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for line in s.datasets:
        writer.writerow(
            [
                s.owner_id,
                s.period,
                s.currency,
                line.dataset_id,
                line.dataset_name,
                line.licence_id,
                line.hit_count,
                line.gross_micros,
                line.owner_micros,
                line.platform_micros,
            ]
        )
    writer.writerow(
        [
            s.owner_id,
            s.period,
            s.currency,
            "TOTAL",
            "",
            "",
            s.hit_count,
            s.gross_micros,
            s.owner_micros,
            s.platform_micros,
        ]
    )
    return out.getvalue()


def statement_html(s: Statement) -> str:
    """A self-contained HTML page (no external assets) for people to read or print."""
    e = html.escape

    def money(micros: int) -> str:
        return f"{e(format_units(micros, s.currency))}<br><small>{micros:,} µ</small>"

    rows = "\n".join(
        f"<tr><td>{e(x.dataset_name)}<br><small>{e(x.dataset_id)}</small></td>"
        f"<td>{e(x.licence_id)}</td><td class=n>{x.hit_count:,}</td>"
        f"<td class=n>{money(x.gross_micros)}</td><td class=n>{money(x.owner_micros)}</td>"
        f"<td class=n>{money(x.platform_micros)}</td></tr>"
        for x in s.datasets
    )
    if not s.datasets:
        rows = "<tr><td colspan=6>No hits in this period.</td></tr>"
    title = f"Statement {e(s.period)} — {e(s.owner_name)}"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; }}
th, td {{ border-bottom: 1px solid #ddd; padding: .4rem .8rem; text-align: left; }}
.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
tfoot td {{ font-weight: bold; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>Owner <code>{e(s.owner_id)}</code>. Period {e(s.period)} (UTC). Amounts in {e(s.currency)};
exact integer micros (µ, millionths of a unit) below each amount.</p>
<table>
<thead><tr><th>Dataset</th><th>Licence</th><th class=n>Hits</th><th class=n>Gross</th>
<th class=n>Owner share</th><th class=n>Platform</th></tr></thead>
<tbody>
{rows}
</tbody>
<tfoot><tr><td>TOTAL</td><td></td><td class=n>{s.hit_count:,}</td>
<td class=n>{money(s.gross_micros)}</td><td class=n>{money(s.owner_micros)}</td>
<td class=n>{money(s.platform_micros)}</td></tr></tfoot>
</table>
</body>
</html>
"""
