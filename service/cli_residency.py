"""`fairshare residency report`: where every dataset's bytes are, in every region.

It visits each region this configuration knows (`Settings.known_regions`): the `[regions.*]`
tables of the config file, the partitions under the data dir, and FAIRSHARE_REGION. It opens
their databases and Qdrant read-only in spirit (it counts, it writes no content) and no models.
Exit status 1 when some dataset's content sits in a region its licence does not allow.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
from qdrant_client import QdrantClient

from contracts import DatasetResidency, ResidencyReport
from ledger.catalog import CatalogStore
from ranking.qdrant_index import open_qdrant
from service.residency import merge_regions, partition_residency
from service.runtime import open_ledger
from service.settings import Settings

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


def _qdrant(settings: Settings) -> QdrantClient | None:
    """The region's Qdrant, or None when it cannot be opened here (local mode held by a running
    server: its points are then reported uncounted)."""
    local = settings.partition_dir / "qdrant"
    if not settings.qdrant_url and not local.exists():
        return None
    try:
        return open_qdrant(url=settings.qdrant_url or None, path=local)
    except RuntimeError:
        return None


async def region_report(settings: Settings) -> list[DatasetResidency]:
    """One region's part of the report."""
    async with open_ledger(settings) as engine:
        qdrant = _qdrant(settings)
        try:
            return await partition_residency(settings, CatalogStore(engine), qdrant)
        finally:
            if qdrant is not None:
                qdrant.close()


async def residency_report(settings: Settings) -> ResidencyReport:
    regions = settings.known_regions()
    parts = [await region_report(settings.for_region(region)) for region in regions]
    return merge_regions(parts, regions)


def _print_text(report: ResidencyReport) -> None:
    print(f"regions read: {', '.join(report.regions)}")
    for d in report.datasets:
        allowed = "any region" if d.processing_regions is None else ", ".join(d.processing_regions)
        held = ", ".join(d.regions) or "nowhere (no content)"
        print(f"\n{d.dataset_id} (owner {d.owner_id}, licence {d.licence_id}: {allowed})")
        print(f"  held in: {held}")
        if d.outside_licence:
            print(f"  OUTSIDE ITS LICENCE in: {', '.join(d.outside_licence)}")
        for s in d.stores:
            items = "uncounted" if s.items is None else f"{s.items:,} items"
            size = "" if s.bytes is None else f", {s.bytes:,} bytes"
            names = ", ".join(s.names) if len(s.names) <= 3 else f"{len(s.names)} files"
            print(f"  [{s.region}] {s.store:<7} {s.kind:<10} {s.location}: {names} ({items}{size})")


async def cmd_residency(args: argparse.Namespace, settings: Settings) -> int:
    report = await residency_report(settings)
    if args.json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(report)).decode() + "\n")
    else:
        _print_text(report)
    return 1 if any(d.outside_licence for d in report.datasets) else 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("residency", help="where each dataset's content is stored, by region")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("report", help="every dataset's files, tables and collections")
    a.add_argument("--json", action="store_true", help="print the report as JSON")


COMMANDS: dict[str, Command] = {"residency": cmd_residency}
