from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import DatasetLine, Hit, InvalidInput, NotFound, Statement
from ledger.catalog import CatalogStore
from ledger.hits import HitLedger
from ledger.statements import (
    build_statement,
    format_units,
    period_bounds,
    statement_csv,
    statement_html,
)
from tests.ledger.support import hit, licence, owner, record, seed_dataset

JAN = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)


async def _month_of_hits(catalog: CatalogStore, ledger: HitLedger) -> list[Hit]:
    """Two datasets, a licence change mid-month, odd prices, and hits outside the period."""
    await seed_dataset(catalog, "guides", lic=licence("std-v1", price=1_333, share_bps=7_500))
    await seed_dataset(catalog, "cases", lic=licence("cases-v1", price=999, share_bps=5_000))
    await catalog.add_owner(owner("rival"))
    written: list[Hit] = []
    n = 0

    async def q(specs: list[dict[str, object]]) -> None:
        nonlocal n
        n += 1
        batch = [hit(f"q{n}", rank, **spec) for rank, spec in enumerate(specs, 1)]  # type: ignore[arg-type]
        await record(ledger, f"q{n}", batch)
        written.extend(batch)

    for day in range(1, 20):
        at = JAN.replace(day=day)
        await q([{"price": 1_333, "share_bps": 7_500, "at": at}] * 3)
        await q(
            [
                {
                    "price": 999,
                    "share_bps": 5_000,
                    "dataset_id": "cases",
                    "licence_id": "cases-v1",
                    "at": at,
                }
            ]
        )
    for day in range(20, 32):  # guides moved to new terms on the 20th
        at = JAN.replace(day=day)
        await q([{"price": 1_777, "share_bps": 6_667, "licence_id": "std-v2", "at": at}])
    await q([{"price": 5_000, "at": datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC)}])
    await q([{"price": 5_000, "at": datetime(2026, 2, 1, tzinfo=UTC)}])
    await q([{"price": 7_000, "owner_id": "rival", "at": JAN}])
    return written


async def test_statement_totals_equal_a_resum_of_hits(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger
) -> None:
    written = await _month_of_hits(catalog, ledger)
    s = await build_statement(engine, owner_id="acme", period="2026-01")
    mine = [
        h
        for h in written
        if h.owner_id == "acme" and h.created_at.month == 1 and h.created_at.year == 2026
    ]
    assert s.hit_count == len(mine) == 19 * 4 + 12
    assert s.gross_micros == sum(h.price_micros for h in mine)
    assert s.owner_micros == sum(h.owner_micros for h in mine)
    assert s.platform_micros == sum(h.platform_micros for h in mine)
    assert s.owner_micros + s.platform_micros == s.gross_micros
    assert (s.currency, s.owner_name, s.period) == ("USD", "Acme Press", "2026-01")
    # One line per (dataset, licence), biggest gross first, each summing its own hits.
    assert [(x.dataset_id, x.licence_id) for x in s.datasets] == [
        ("guides", "std-v1"),
        ("guides", "std-v2"),
        ("cases", "cases-v1"),
    ]
    for line in s.datasets:
        own = [
            h for h in mine if (h.dataset_id, h.licence_id) == (line.dataset_id, line.licence_id)
        ]
        assert (line.hit_count, line.gross_micros, line.owner_micros, line.platform_micros) == (
            len(own),
            sum(h.price_micros for h in own),
            sum(h.owner_micros for h in own),
            sum(h.platform_micros for h in own),
        )
        assert line.dataset_name == f"Dataset {line.dataset_id}"
    assert s.datasets[0].owner_micros == 57 * 1_000  # 1333 @ 75% rounds to 1000 per hit


async def test_period_boundaries_are_utc_months(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger
) -> None:
    await seed_dataset(catalog)
    last_instant = datetime(2026, 1, 31, 23, 59, 59, 999_000, tzinfo=UTC)
    first_instant = datetime(2026, 2, 1, 0, 0, tzinfo=UTC)
    paris_evening = datetime(2026, 2, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    await record(ledger, "a", [hit("a", 1, price=100, at=last_instant)])
    await record(ledger, "b", [hit("b", 1, price=20, at=first_instant)])
    await record(ledger, "c", [hit("c", 1, price=3, at=paris_evening)])  # 23:30 UTC on Jan 31
    jan = await build_statement(engine, owner_id="acme", period="2026-01")
    feb = await build_statement(engine, owner_id="acme", period="2026-02")
    assert (jan.hit_count, jan.gross_micros) == (2, 103)
    assert (feb.hit_count, feb.gross_micros) == (1, 20)


async def test_december_rolls_into_next_year(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger
) -> None:
    await seed_dataset(catalog)
    await record(ledger, "a", [hit("a", 1, at=datetime(2025, 12, 31, 23, 0, tzinfo=UTC))])
    await record(ledger, "b", [hit("b", 1, at=datetime(2026, 1, 1, tzinfo=UTC))])
    assert (await build_statement(engine, owner_id="acme", period="2025-12")).hit_count == 1
    assert period_bounds("2025-12") == (
        datetime(2025, 12, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    )


async def test_month_without_hits_is_an_empty_statement(
    engine: AsyncEngine, catalog: CatalogStore
) -> None:
    await seed_dataset(catalog)
    s = await build_statement(engine, owner_id="acme", period="2026-03")
    assert (s.hit_count, s.gross_micros, s.datasets) == (0, 0, [])
    assert "No hits in this period" in statement_html(s)
    assert statement_csv(s).splitlines()[-1].split(",")[3:] == ["TOTAL", "", "", "0", "0", "0", "0"]


async def test_unknown_owner_is_not_found(engine: AsyncEngine) -> None:
    with pytest.raises(NotFound, match="owner ghost"):
        await build_statement(engine, owner_id="ghost", period="2026-01")


@pytest.mark.parametrize(
    "period", ["2026-13", "2026-1", "x", "2026-00", "0000-01", "2026-01-01", " 2026-01", "9999-12"]
)
async def test_bad_periods_are_invalid_input(
    engine: AsyncEngine, catalog: CatalogStore, period: str
) -> None:
    await catalog.add_owner(owner())
    with pytest.raises(InvalidInput):
        await build_statement(engine, owner_id="acme", period=period)


async def test_csv_rows_and_total(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger
) -> None:
    await _month_of_hits(catalog, ledger)
    s = await build_statement(engine, owner_id="acme", period="2026-01")
    rows = list(csv.DictReader(io.StringIO(statement_csv(s))))
    assert list(rows[0]) == [
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
    ]
    body, total = rows[:-1], rows[-1]
    assert [(r["dataset_id"], r["licence_id"]) for r in body] == [
        (x.dataset_id, x.licence_id) for x in s.datasets
    ]
    assert total["dataset_id"] == "TOTAL"
    for column in ("hit_count", "gross_micros", "owner_micros", "platform_micros"):
        assert int(total[column]) == sum(int(r[column]) for r in body) == getattr(s, column)
    assert {r["owner_id"] for r in rows} == {"acme"} and {r["currency"] for r in rows} == {"USD"}


def _statement(name: str = "<Acme & Sons>") -> Statement:
    line = DatasetLine(
        dataset_id="guides",
        dataset_name="<script>alert(1)</script>",
        licence_id="std-v1",
        hit_count=3,
        gross_micros=3_999,
        owner_micros=3_000,
        platform_micros=999,
    )
    return Statement(
        owner_id="acme",
        owner_name=name,
        period="2026-01",
        currency="USD",
        hit_count=3,
        gross_micros=3_999,
        owner_micros=3_000,
        platform_micros=999,
        datasets=[line],
    )


def test_html_escapes_names_and_shows_exact_totals() -> None:
    page = statement_html(_statement())
    assert page.startswith("<!doctype html>") and "<table>" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "&lt;Acme &amp; Sons&gt;" in page
    assert "0.003999" in page and "3,999 µ" in page  # gross in units and micros
    assert "0.003" in page and "0.000999" in page
    assert "http" not in page  # self-contained: no external assets


def test_csv_does_not_break_on_commas_in_names() -> None:
    s = _statement()
    line = msgspec.structs.replace(s.datasets[0], dataset_name='Guides, "annotated"')
    odd = msgspec.structs.replace(s, datasets=[line])
    rows = list(csv.DictReader(io.StringIO(statement_csv(odd))))
    assert rows[0]["dataset_name"] == 'Guides, "annotated"' and rows[0]["gross_micros"] == "3999"


@pytest.mark.parametrize(
    ("micros", "currency", "shown"),
    [
        (0, "USD", "0.00"),
        (1_000_000, "USD", "1.00"),
        (1_333_000, "USD", "1.333"),
        (1_234_567_891, "USD", "1,234.567891"),
        (1, "EUR", "0.000001"),
        (5_000_000, "JPY", "5"),
        (1_500_000, "KWD", "1.500"),
        (-2_500_000, "USD", "-2.50"),
    ],
)
def test_amounts_format_exactly(micros: int, currency: str, shown: str) -> None:
    assert format_units(micros, currency) == shown
