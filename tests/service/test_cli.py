"""The `fairshare` commands a publisher and an agent run, in a fresh data dir, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.cli import build_parser, main

LICENCE = """
id = "cli-licence"
name = "CLI licence"
currency = "USD"
price_per_hit_micros = 2000
owner_share_bps = 6000
snippet_cap_chars = 120
attribution = "Source: CLI Press"
"""


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: object) -> Path:
    monkeypatch.setenv("FAIRSHARE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FAIRSHARE_API_KEY", raising=False)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_publisher_and_agent_workflow(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "owners", "add", "--id", "cli-press", "--name", "CLI Press")
    assert status == 0 and json.loads(out)["id"] == "cli-press"

    licence = data_dir / "licence.toml"
    licence.write_text(LICENCE)
    status, out, _ = run(
        capsys,
        "datasets",
        "add",
        "--id",
        "cli-docs",
        "--owner",
        "cli-press",
        "--licence",
        str(licence),
    )
    assert status == 0 and json.loads(out)["licence"]["price_per_hit_micros"] == 2000

    source = data_dir / "docs.jsonl"
    source.write_text(
        json.dumps(
            {
                "id": "tides",
                "title": "Tides",
                "text": "Spring tides occur near new and full moon, when the sun and moon align.",
            }
        )
        + "\n{oops\n"
        + json.dumps(
            {
                "id": "winds",
                "title": "Winds",
                "text": "Trade winds blow from the east in the tropics.",
            }
        )
        + "\n"
    )
    status, out, err = run(capsys, "ingest", "--dataset", "cli-docs", str(source), "--no-progress")
    assert status == 1, "a bad record makes the exit status non-zero"
    assert "docs.jsonl:2" in err
    assert "2 added" in out
    status, out, _ = run(capsys, "ingest", "--dataset", "cli-docs", str(source), "--no-progress")
    assert "0 added, 0 changed, 2 unchanged" in out

    status, out, _ = run(capsys, "keys", "create", "--customer", "cli-agent", "--role", "agent")
    created = json.loads(out)
    assert status == 0 and created["api_key"].startswith("fs_")

    status, out, _ = run(
        capsys, "search", "when are spring tides", "--api-key", created["api_key"], "--top-k", "1"
    )
    result = json.loads(out)
    assert status == 0
    assert result["results"][0]["citation"]["document_id"] == "tides"
    assert len(result["results"][0]["text"]) <= 120 and result["cost_micros"] == 2000
    key = created["api_key"]
    status, out, _ = run(capsys, "search", "spring tides", "--api-key", key, "--language", "de")
    assert status == 0 and json.loads(out)["results"] == []  # the documents are English
    status, _, err = run(capsys, "search", "tides", "--api-key", key, "--language", "xx")
    assert status == 2 and "unknown language code(s) 'xx'" in err

    status, out, _ = run(capsys, "keys", "revoke", created["key_id"])
    assert status == 0
    status, _, err = run(capsys, "search", "tides", "--api-key", created["api_key"])
    assert status == 2 and "invalid API key" in err


def test_clear_errors_and_exit_status(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = data_dir / "bad.toml"
    bad.write_text('id = "x"\nname = "X"\n')
    run(capsys, "owners", "add", "--id", "o", "--name", "O")
    status, _, err = run(
        capsys, "datasets", "add", "--id", "d", "--owner", "o", "--licence", str(bad)
    )
    assert status == 2 and "bad.toml" in err and "missing required field" in err
    status, _, err = run(
        capsys,
        "datasets",
        "add",
        "--id",
        "d",
        "--owner",
        "o",
        "--licence",
        str(data_dir / "none.toml"),
    )
    assert status == 2 and "does not exist" in err
    status, _, err = run(capsys, "ingest", "--dataset", "nope", str(bad))
    assert status == 2 and "unknown dataset" in err
    status, _, err = run(capsys, "search", "anything")
    assert status == 2 and "api-key" in err


def test_help_lists_every_command() -> None:
    text = build_parser().format_help()
    for command in [
        "serve",
        "ingest",
        "search",
        "keys",
        "owners",
        "datasets",
        "statements",
        "demo",
    ]:
        assert command in text
