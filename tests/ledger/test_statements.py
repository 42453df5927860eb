from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import ConflictError, Hit, InvalidInput, NotFound
from ledger.catalog import CatalogStore
from ledger.hits import HitLedger
from ledger.periods import close_period, period_bounds
from ledger.reversals import reverse_query
from ledger.statements import build_statement
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
    assert (s.hit_count, s.gross_micros, s.datasets, s.documents, s.licences) == (0, 0, [], [], [])
    assert [d.day for d in s.days][:2] == ["2026-03-01", "2026-03-02"] and len(s.days) == 31
    assert not s.closed and s.payout is None and s.payable_micros == 0


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


async def test_breakdowns_by_document_and_day_add_up(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger
) -> None:
    written = await _month_of_hits(catalog, ledger)
    s = await build_statement(engine, owner_id="acme", period="2026-01")
    assert len(s.days) == 31 and s.days[0].day == "2026-01-01" and s.days[-1].day == "2026-01-31"
    assert sum(d.hit_count for d in s.days) == s.hit_count
    assert sum(d.gross_micros for d in s.days) == s.gross_micros
    assert sum(d.owner_micros for d in s.days) == s.owner_micros
    jan_20 = [h for h in written if h.owner_id == "acme" and h.created_at == JAN.replace(day=20)]
    assert next(d for d in s.days if d.day == "2026-01-20").gross_micros == sum(
        h.price_micros for h in jan_20
    )
    # Every hit of the fixture cites document "doc" of its dataset: one line per dataset.
    assert [(d.dataset_id, d.document_id) for d in s.documents] == [
        ("guides", "doc"),
        ("cases", "doc"),
    ]
    assert sum(d.gross_micros for d in s.documents) == s.gross_micros
    assert [t.licence_id for t in s.licences] == ["cases-v1", "std-v1"]  # std-v2 never registered
    assert s.licences[1].price_per_hit_micros == 1_333 and s.licences[1].owner_share_bps == 7_500


async def test_top_twenty_documents_by_gross(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger
) -> None:
    await seed_dataset(catalog)
    for n in range(25):
        batch = [
            msgspec.structs.replace(hit(f"q{n}", r), document_id=f"d{n:02d}", chunk_id=f"c{n}-{r}")
            for r in range(1, n + 2)
        ]
        await record(ledger, f"q{n}", batch)
    s = await build_statement(engine, owner_id="acme", period="2026-01")
    assert len(s.documents) == 20
    assert [d.document_id for d in s.documents] == [f"d{n:02d}" for n in range(24, 4, -1)]
    assert s.documents[0].hit_count == 25


async def test_close_moves_later_hits_to_the_next_period(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger
) -> None:
    await seed_dataset(catalog)
    await record(ledger, "early", [hit("early", 1, at=JAN)])
    assert await close_period(engine, "2026-01", now=JAN.replace(month=2)) is True
    assert await close_period(engine, "2026-01", now=JAN.replace(month=2)) is False  # idempotent
    late = JAN.replace(day=31, hour=23)  # served in January, recorded after the close
    await record(ledger, "late", [hit("late", 1, at=late)])
    jan = await build_statement(engine, owner_id="acme", period="2026-01")
    feb = await build_statement(engine, owner_id="acme", period="2026-02")
    assert (jan.closed, jan.hit_count) == (True, 1)
    assert (feb.closed, feb.hit_count) == (False, 1)
    # The late hit keeps its real day in February's day list.
    assert [d.day for d in feb.days if d.hit_count] == ["2026-01-31"]
    assert feb.carried_in_micros == jan.payable_micros == jan.owner_micros


async def test_reversal_is_booked_in_the_open_period_and_nets_the_payable(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger
) -> None:
    await seed_dataset(catalog)
    await record(ledger, "q1", [hit("q1", 1, price=2_000), hit("q1", 2, price=2_000)])
    await close_period(engine, "2026-01", now=JAN.replace(month=2))
    reversal = await reverse_query(
        engine, "q1", rank=2, reason="bad_result", now=JAN.replace(month=2)
    )
    assert reversal.refunded_micros == 2_000 and reversal.hits[0].period == "2026-02"
    jan = await build_statement(engine, owner_id="acme", period="2026-01")
    feb = await build_statement(engine, owner_id="acme", period="2026-02")
    assert (jan.hit_count, jan.reversal_count, jan.net_owner_micros) == (2, 0, 2 * 1_400)
    assert (feb.hit_count, feb.reversal_count, feb.reversed_owner_micros) == (0, 1, 1_400)
    assert feb.net_owner_micros == -1_400
    assert feb.payable_micros == feb.carried_forward_micros == 1_400


async def test_periods_close_in_order(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger
) -> None:
    await seed_dataset(catalog)
    await record(ledger, "q1", [hit("q1", 1, at=JAN)])
    with pytest.raises(ConflictError, match="2026-01 has entries and is still open"):
        await close_period(engine, "2026-02", now=JAN.replace(month=3))
    with pytest.raises(InvalidInput, match="has not started"):
        await close_period(engine, "2026-05", now=JAN.replace(month=3))
    assert await close_period(engine, "2026-01", now=JAN.replace(month=3))
    assert await close_period(engine, "2026-02", now=JAN.replace(month=3))
    assert (await build_statement(engine, owner_id="acme", period="2025-11")).closed
