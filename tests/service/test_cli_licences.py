"""`fairshare datasets licence export|import` and `fairshare customers territory`, in a fresh
data dir, through `main` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.rsl import licence_from_rsl
from service.cli import main

LICENCE_TOML = """
id = "acme-2026"
name = "Acme 2026"
currency = "USD"
price_per_hit_micros = 2500
owner_share_bps = 7000
snippet_cap_chars = 400
attribution = "Source: Acme Press"
territories = ["SG", "MY"]
valid_until = 2030-01-01T00:00:00Z
"""

PUBLISHER_RSL = """<?xml version="1.0" encoding="UTF-8"?>
<rsl xmlns="https://rslstandard.org/rsl">
  <content url="/news/*">
    <license>
      <permits type="usage">all</permits>
      <payment type="use"><amount currency="USD">0.01</amount></payment>
    </license>
  </content>
</rsl>
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out + captured.err


@pytest.fixture
def acme(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    monkeypatch.setenv("FAIRSHARE_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "licence.toml").write_text(LICENCE_TOML)
    assert run(capsys, "owners", "add", "--id", "acme", "--name", "Acme Press")[0] == 0
    status, out = run(
        capsys, "datasets", "add", "--id", "acme-news", "--owner", "acme",
        "--licence", str(tmp_path / "licence.toml"),
    )  # fmt: skip
    assert status == 0, out
    return tmp_path


def test_export_writes_the_licence_as_rsl(acme: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = acme / "licence.xml"
    status, out = run(
        capsys, "datasets", "licence", "export", "acme-news", "--output", str(out_file)
    )
    assert status == 0, out
    licence = licence_from_rsl(out_file.read_bytes(), currency="USD")
    assert (licence.id, licence.price_per_hit_micros, licence.territories) == (
        "acme-2026",
        2500,
        ["MY", "SG"],
    )
    assert licence.valid_until is not None and licence.valid_until.year == 2030
    status, printed = run(capsys, "datasets", "licence", "export", "acme-news")
    assert status == 0 and printed.encode() == out_file.read_bytes()


def test_import_serves_the_dataset_under_the_publishers_terms(
    acme: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (acme / "license.xml").write_text(PUBLISHER_RSL)
    status, out = run(
        capsys, "datasets", "licence", "import", "acme-news", str(acme / "license.xml"),
        "--licence-id", "acme-rsl", "--owner-share-bps", "6000", "--snippet-cap-chars", "300",
        "--attribution", "Acme Press",
    )  # fmt: skip
    assert status == 0, out
    licence = json.loads(out)["licence"]
    assert licence["id"] == "acme-rsl" and licence["price_per_hit_micros"] == 10_000
    assert licence["permits"] == ["rag", "display", "summarize", "train"]
    status, out = run(capsys, "datasets", "list")
    assert json.loads(out)[0]["licence"]["id"] == "acme-rsl"


def test_import_without_the_terms_rsl_lacks_says_which(
    acme: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (acme / "license.xml").write_text(PUBLISHER_RSL)
    status, out = run(
        capsys, "datasets", "licence", "import", "acme-news", str(acme / "license.xml")
    )
    assert status != 0
    assert "licence_id, owner_share_bps, snippet_cap_chars, attribution" in out
    status, out = run(capsys, "datasets", "list")
    assert json.loads(out)[0]["licence"]["id"] == "acme-2026"  # unchanged


def test_customer_territory(acme: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "keys", "create", "--customer", "Agent Co", "--role", "agent")[0] == 0
    status, out = run(capsys, "customers", "territory", "Agent Co", "sg")
    assert status == 0 and json.loads(out)["territory"] == "SG"
    status, out = run(capsys, "customers", "territory", "Agent Co", "Singapore")
    assert status != 0 and "ISO 3166-1 alpha-2" in out
