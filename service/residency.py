"""Residency: where each dataset's bytes are, region by region.

A report reads one region's partition at a time: its catalog tables (documents and chunk text),
its FAISS and BM25 files, and its Qdrant collection. A server reports only its own region; the
`fairshare residency report` command visits every region it knows (`Settings.known_regions`).
Reading writes no content: no index file or collection appears because a report looked.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from qdrant_client import QdrantClient
from sqlalchemy.engine import make_url

from contracts import Dataset, DatasetResidency, ResidencyReport, StoreResidency
from ledger.catalog import CatalogStore
from ranking.qdrant_index import count_points
from service.settings import Settings

# Files a generation of each index writes that list its chunk ids, one entry per vector or
# BM25 document (FAISS: <dataset>/<generation>/ids.json; BM25: .../<generation>/<language>/).
_IDS_FILE = "ids.json"


def database_location(url: str) -> str:
    """The database URL with its password hidden: a report is shown to owners."""
    return make_url(url).render_as_string(hide_password=True)


def _files(directory: Path, data_dir: Path) -> tuple[list[str], int, int]:
    """(files under `directory` relative to the data dir, their bytes, chunk ids they list)."""
    names: list[str] = []
    size = ids = 0
    if not directory.is_dir():
        return names, size, ids
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        names.append(str(path.relative_to(data_dir)))
        size += path.stat().st_size
        if path.name == _IDS_FILE:
            ids += len(json.loads(path.read_text()))
    return names, size, ids


def partition_stores(
    settings: Settings, dataset: Dataset, qdrant: QdrantClient | None
) -> list[StoreResidency]:
    """What this region's partition holds of `dataset`. Stores holding nothing are left out,
    except the catalog, whose rows are counted even when zero (the dataset is registered)."""
    region = settings.region
    database = database_location(settings.resolved_database_url)
    stores = [
        StoreResidency(
            store="catalog",
            kind="tables",
            region=region,
            location=database,
            names=[table],
            items=count,
        )
        for table, count in (("documents", dataset.document_count), ("chunks", dataset.chunk_count))
    ]
    for store, directory in (
        ("faiss", settings.partition_dir / "faiss" / dataset.id),
        ("bm25", settings.partition_dir / "bm25" / dataset.id),
    ):
        names, size, ids = _files(directory, settings.data_dir)
        if names:
            stores.append(
                StoreResidency(
                    store=store,  # type: ignore[arg-type]
                    kind="files",
                    region=region,
                    location=str(directory.resolve()),
                    names=names,
                    items=ids,
                    bytes=size,
                )
            )
    local = settings.partition_dir / "qdrant"
    if qdrant is None and not settings.qdrant_url and not local.exists():
        return stores  # local mode never written in this region: no points anywhere
    points = (
        None if qdrant is None else count_points(qdrant, settings.qdrant_collection, dataset.id)
    )
    if points != 0:
        stores.append(
            StoreResidency(
                store="qdrant",
                kind="collection",
                region=region,
                location=settings.qdrant_url or str(local.resolve()),
                names=[settings.qdrant_collection],
                items=points,
            )
        )
    return stores


async def partition_residency(
    settings: Settings,
    catalog: CatalogStore,
    qdrant: QdrantClient | None,
    *,
    owner_id: str | None = None,
) -> list[DatasetResidency]:
    """Every dataset of this region's catalog (or of one owner) with what the partition holds."""
    datasets = [
        d for d in await catalog.list_datasets() if owner_id is None or d.owner_id == owner_id
    ]
    # File walks and Qdrant counts block: off the event loop.
    return await asyncio.to_thread(
        lambda: [_residency(d, partition_stores(settings, d, qdrant)) for d in datasets]
    )


def _holds_content(store: StoreResidency) -> bool:
    return store.items is None or store.items > 0


def _residency(dataset: Dataset, stores: Sequence[StoreResidency]) -> DatasetResidency:
    licence = dataset.licence
    regions = sorted({s.region for s in stores if _holds_content(s)})
    return DatasetResidency(
        dataset_id=dataset.id,
        owner_id=dataset.owner_id,
        licence_id=licence.id,
        processing_regions=licence.processing_regions,
        regions=regions,
        outside_licence=[r for r in regions if not licence.processes_in(r)],
        stores=list(stores),
    )


def merge_regions(
    parts: Iterable[Sequence[DatasetResidency]], regions: list[str]
) -> ResidencyReport:
    """One report from several regions' partitions: a dataset held in two regions appears once,
    with the stores of both (its licence as the first region's catalog holds it)."""
    by_id: dict[str, DatasetResidency] = {}
    for part in parts:
        for entry in part:
            first = by_id.get(entry.dataset_id)
            if first is None:
                by_id[entry.dataset_id] = entry
                continue
            stores = first.stores + entry.stores
            held = sorted(set(first.regions) | set(entry.regions))
            by_id[entry.dataset_id] = DatasetResidency(
                dataset_id=first.dataset_id,
                owner_id=first.owner_id,
                licence_id=first.licence_id,
                processing_regions=first.processing_regions,
                regions=held,
                outside_licence=sorted(set(first.outside_licence) | set(entry.outside_licence)),
                stores=stores,
            )
    return ResidencyReport(
        generated_at=datetime.now(UTC),
        regions=regions,
        datasets=[by_id[k] for k in sorted(by_id)],
    )
