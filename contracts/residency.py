"""Where a dataset's bytes are: the residency report an admin or the owner reads."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

# What holds a dataset's content: catalog tables (documents and chunk text), the FAISS and BM25
# index files, and the Qdrant collection (vectors and payload).
Store = Literal["catalog", "faiss", "bm25", "qdrant"]


class StoreResidency(msgspec.Struct, frozen=True, kw_only=True):
    """One store's share of a dataset in one region.

    `location` is the database URL (password hidden), the directory, or the Qdrant server and
    collection; `names` the tables, files or collection; `items` rows (catalog: documents and
    chunks), vectors, BM25 documents or points; `bytes` the files' size (None where the store
    does not say: a database or a server). `items` None: the store was not open to count."""

    store: Store
    kind: Literal["tables", "files", "collection"]
    region: str
    location: str
    names: list[str]
    items: int | None
    bytes: int | None = None


class DatasetResidency(msgspec.Struct, frozen=True, kw_only=True):
    """Every place one dataset's content is held, over the regions the report visited.

    `outside_licence` names regions holding its content that its licence does not allow
    (possible only when the licence changed after ingest): revoke there or re-licence."""

    dataset_id: str
    owner_id: str
    licence_id: str
    processing_regions: list[str] | None  # None: the licence allows any region
    regions: list[str]  # regions whose partition holds any of its content
    outside_licence: list[str]
    stores: list[StoreResidency]


class ResidencyReport(msgspec.Struct, frozen=True, kw_only=True):
    generated_at: datetime
    regions: list[str]  # the region partitions this report read
    datasets: list[DatasetResidency]
