"""The README is part of the product: it must match the settings and commands that exist."""

from __future__ import annotations

from pathlib import Path

from service.cli import build_parser
from service.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [s.name for s in SETTINGS if f"`FAIRSHARE_{s.name.upper()}`" not in README]
    assert missing == []


def test_every_cli_command_is_documented() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert commands is not None
    missing = [name for name in commands if f"fairshare {name}" not in README]
    assert missing == []


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in README and "make run" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
