"""The money commands end to end: close a month, pay it through Stripe (a local fake), reconcile,
verify, reverse, and render statements, all through `fairshare` in a fresh data dir."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pypdf import PdfReader

from contracts import Owner
from ledger.catalog import CatalogStore
from ledger.db import make_engine, migrate, sqlite_url
from ledger.hits import HitLedger
from service.cli import main
from tests.ledger.support import hit, licence, record
from tests.stripe_fake import FakeStripe


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStripe]:
    monkeypatch.setenv("FAIRSHARE_DATA_DIR", str(tmp_path / "data"))
    with FakeStripe() as stripe:
        stripe.set_balance("usd", 100_000)
        stripe.add_account("acct_acme")
        monkeypatch.setenv("FAIRSHARE_STRIPE_API_KEY", stripe.api_key)
        monkeypatch.setenv("FAIRSHARE_STRIPE_API_BASE", stripe.api_base)
        monkeypatch.setenv("FAIRSHARE_PAYOUT_MINIMUM_MICROS", "1000000")
        asyncio.run(_history(tmp_path / "data"))
        yield stripe


async def _history(data_dir: Path) -> None:
    """acme earns 3 x 1.333333 USD in January 2026 (one query of three hits)."""
    engine = make_engine(sqlite_url(data_dir / "regions" / "local" / "fairshare.db"))
    try:
        await migrate(engine)
        catalog = CatalogStore(engine)
        await catalog.add_owner(Owner(id="acme", name="Acme Press", stripe_account="acct_acme"))
        await catalog.add_dataset(
            dataset_id="guides",
            owner_id="acme",
            name="Guides",
            description="",
            licence=licence(price=1_333_333, share_bps=10_000),
        )
        hits = [hit("q1", r, price=1_333_333, share_bps=10_000) for r in (1, 2, 3)]
        await record(HitLedger(engine), "q1", hits)
    finally:
        await engine.dispose()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_close_pay_reconcile_verify(
    fake: FakeStripe, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = run(capsys, "payouts", "run", "--period", "2026-01")
    assert status == 2 and "2026-01 is open" in out
    assert run(capsys, "periods", "close", "2026-01")[0] == 0
    assert "2026-01 closed at" in run(capsys, "periods", "list")[1]

    status, out = run(capsys, "payouts", "run", "--period", "2026-01")
    assert status == 0, out
    assert "acme: paid" in out and "po_2026-01_acme_1: submitted" in out
    assert [(t["destination"], t["amount"]) for t in fake.transfers] == [("acct_acme", 399)]
    status, out = run(capsys, "payouts", "run", "--period", "2026-01")
    assert status == 0 and len(fake.transfers) == 1

    status, out = run(capsys, "payouts", "reconcile", "--period", "2026-01")
    assert (status, out.strip()) == (0, "0 mismatch(es)")
    status, out = run(capsys, "payouts", "list", "--owner", "acme")
    assert status == 0 and json.loads(out)[0]["state"] == "paid"

    status, out = run(capsys, "ledger", "verify")
    assert status == 0 and "checked 4 transactions" in out and "ledger OK" in out
    status, out = run(capsys, "ledger", "balances")
    assert "owner:acme" in out and "-0.009999" in out  # 3 x 1.333333 - 3.99: carried forward

    status, out = run(capsys, "ledger", "reverse", "q1", "--rank", "2", "--reason", "bad_result")
    assert status == 0 and json.loads(out)["refunded_micros"] == 1_333_333
    with pytest.raises(SystemExit) as exited:
        main(["ledger", "reverse", "q1", "--reason", "because"])
    assert exited.value.code == 2 and "invalid choice" in capsys.readouterr().err

    status, out = run(capsys, "statements", "--owner", "acme", "--period", "2026-01")
    january = json.loads(out)
    assert (january["payout_micros"], january["carried_forward_micros"]) == (3_990_000, 9_999)
    pdf = tmp_path / "jan.pdf"
    status, out = run(
        capsys,
        "statements",
        "--owner",
        "acme",
        "--period",
        "2026-01",
        "--format",
        "pdf",
        "--output",
        str(pdf),
    )
    assert status == 0
    text = "".join(p.extract_text() for p in PdfReader(pdf).pages)
    assert "Acme Press" in text and "3.99" in text
    status, out = run(
        capsys, "statements", "--owner", "acme", "--period", "2026-01", "--format", "pdf"
    )
    assert status == 2 and "--output" in out


def test_verify_exits_1_and_names_the_broken_link(
    fake: FakeStripe, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "data" / "regions" / "local" / "fairshare.db")
    with db:
        db.execute("DROP TRIGGER hits_no_update")
        db.execute("UPDATE hits SET chunk_id = 'another passage' WHERE seq = 2")
    db.close()
    status, out = run(capsys, "ledger", "verify")
    assert status == 1
    assert "FIRST BROKEN LINK: seq 2" in out and "hash does not match" in out


def test_payouts_without_stripe_key_are_refused(
    fake: FakeStripe, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FAIRSHARE_STRIPE_API_KEY")
    assert run(capsys, "periods", "close", "2026-01")[0] == 0
    status, out = run(capsys, "payouts", "run", "--period", "2026-01")
    assert status == 2 and "FAIRSHARE_STRIPE_API_KEY" in out
    assert fake.transfers == []


def test_periods_close_refuses_the_future(
    fake: FakeStripe, capsys: pytest.CaptureFixture[str]
) -> None:
    future = f"{datetime.now(UTC).year + 1}-01"
    status, out = run(capsys, "periods", "close", future)
    assert status == 2 and "has not started" in out
