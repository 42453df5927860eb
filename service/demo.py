"""Load the demo catalog shipped in `demo/` and hand out demo API keys."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgspec

from contracts import AuthError, InvalidInput, Licence, Owner
from ingest.run import IngestReport
from service.runtime import Runtime

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"


@dataclass(frozen=True, slots=True)
class DemoKeys:
    agent: str
    owner: str
    owner_id: str
    admin: str


def read_licence(path: Path) -> Licence:
    """A licence from a TOML or JSON file, validated, with the file named in any error."""
    try:
        raw = path.read_bytes()
        if path.suffix.lower() == ".json":
            return msgspec.json.decode(raw, type=Licence)
        return msgspec.convert(tomllib.loads(raw.decode()), Licence)
    except FileNotFoundError:
        raise InvalidInput(f"licence file {str(path)!r} does not exist") from None
    except (msgspec.ValidationError, msgspec.DecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"licence file {path}: {exc}") from None


def read_catalog(catalog_dir: Path = DEMO_DIR) -> dict[str, Any]:
    return tomllib.loads((catalog_dir / "catalog.toml").read_text())


async def load_demo_catalog(
    runtime: Runtime,
    catalog_dir: Path = DEMO_DIR,
    *,
    progress: bool = True,
    only: set[str] | None = None,
) -> list[IngestReport]:
    """Add the demo owners and datasets (all, or those in `only`) and ingest their sources.
    Idempotent: a second run reports every document unchanged and writes nothing."""
    catalog = read_catalog(catalog_dir)
    wanted = [d for d in catalog["datasets"] if only is None or d["id"] in only]
    owners = {d["owner"] for d in wanted}
    for raw_owner in catalog["owners"]:
        if raw_owner["id"] in owners:
            await runtime.catalog.add_owner(msgspec.convert(raw_owner, Owner))
    reports = []
    for raw in wanted:
        await runtime.catalog.add_dataset(
            dataset_id=raw["id"],
            owner_id=raw["owner"],
            name=raw["name"],
            description=raw.get("description", ""),
            licence=read_licence(catalog_dir / raw["licence"]),
        )
        reports.append(
            await runtime.ingest(
                catalog_dir / raw["source"], raw["id"], sync=True, progress=progress
            )
        )
    return reports


async def demo_keys(runtime: Runtime, owner_id: str) -> DemoKeys:
    """Reuse the demo keys saved in the data dir while they still work, else mint new ones.

    Keys are stored hashed, so the plaintext can only be shown again from this local file
    (mode 0600), which exists only for the demo.
    """
    path = runtime.settings.partition_dir / "demo-keys.json"
    if path.exists():
        try:
            saved = DemoKeys(**json.loads(path.read_text()))
            for key in (saved.agent, saved.owner, saved.admin):
                await runtime.keys.authenticate(key)
            if saved.owner_id == owner_id:
                return saved
        except (AuthError, TypeError, ValueError):
            pass
    _, agent = await runtime.keys.create_key(customer="demo-agent", role="agent")
    _, owner = await runtime.keys.create_key(
        customer=f"demo-owner-{owner_id}", role="owner", owner_id=owner_id
    )
    _, admin = await runtime.keys.create_key(customer="demo-admin", role="admin")
    keys = DemoKeys(agent=agent, owner=owner, owner_id=owner_id, admin=admin)
    path.write_text(json.dumps(asdict(keys)))
    os.chmod(path, 0o600)
    return keys
