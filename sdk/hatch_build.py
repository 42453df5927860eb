"""Ships the repository's `contracts/` package inside the SDK's wheel, from where it lies.

Only in a built wheel: an editable install would copy it into site-packages, where the copy
would shadow the live source (the repository root is on the path instead, see `dev-mode-dirs`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

CONTRACTS = Path(__file__).resolve().parent.parent / "contracts"


class ContractsHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "editable":
            return
        if not (CONTRACTS / "__init__.py").is_file():
            raise FileNotFoundError(f"the wheel ships {CONTRACTS}: build it in the repository")
        build_data["force_include"][str(CONTRACTS)] = "contracts"
