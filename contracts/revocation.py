"""Revocation: a dataset's content removed from every store, and the signed receipt that says so.

A deletion receipt is a JWS signed with the same Ed25519 key as search receipts (published at
`/v1/keys/receipts`), with `typ` `fairshare-revocation+jws`, over `RevocationClaims`: for each
region whose partition held the dataset, what each store gave up.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from contracts.catalog import Region, UtcTime
from contracts.errors import ConflictError
from contracts.types import Slug

Count = Annotated[int, Meta(ge=0)]
# Where a dataset's content (or a copy of its text) was held: the catalog tables (documents and
# chunk text), the FAISS and BM25 index files, the Qdrant collection (vectors and payload), the
# cross-encoder's score cache of the revoking process, and the stored search responses the
# ledger replays for Idempotency-Keys (`queries.response`, whose passage text is scrubbed).
RemovedFrom = Literal["catalog", "faiss", "bm25", "qdrant", "rerank_cache", "responses"]
# "every-region": `fairshare datasets revoke`, which visits every region it knows; "region": the
# admin route, which revokes only in the region of the server that answered it.
Coverage = Literal["every-region", "region"]


class StoreRemoval(msgspec.Struct, frozen=True, kw_only=True):
    """What one store of one region gave up.

    `items` counts what the store holds per dataset: catalog rows (of the table in `names`),
    vectors (FAISS, chunk ids in its id map), BM25 documents, Qdrant points, cache entries, or
    stored responses whose passage text was scrubbed. `files` and `bytes` are what was deleted
    from disk. `location` is the database (password hidden), directory, or Qdrant server or
    path; `names` the tables or collection."""

    store: RemovedFrom
    location: str
    names: list[str] = msgspec.field(default_factory=list)
    items: Count
    files: Count = 0
    bytes: Count = 0


class RegionRemoval(msgspec.Struct, frozen=True, kw_only=True):
    """Everything removed from one region's partition, and when the region stopped serving it."""

    region: Region
    revoked_at: UtcTime
    stores: list[StoreRemoval]


class RevocationClaims(msgspec.Struct, frozen=True, kw_only=True):
    """What a deletion receipt signs. `regions_visited` are the partitions the revocation looked
    in; `regions` those that held the dataset and what each gave up."""

    revocation_id: str
    dataset_id: Slug
    owner_id: Slug
    issued_at: UtcTime
    coverage: Coverage
    regions_visited: list[Region]
    regions: list[RegionRemoval]


class RevocationReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """`jws` is what was signed; `claims` is its payload, decoded and verified for convenience."""

    revocation_id: str
    dataset_id: str
    key_id: str
    jws: str
    claims: RevocationClaims


def revoked_error(dataset_id: str, revoked_at: datetime) -> ConflictError:
    """What a write of content into a revoked dataset gets (ingest): its content may never be
    held again."""
    return ConflictError(
        f"dataset {dataset_id} was revoked at {revoked_at.isoformat(timespec='seconds')}; its "
        "content may not be ingested again. To serve content under new terms, add a dataset "
        "with another id.",
        dataset_id=dataset_id,
        revoked_at=revoked_at.isoformat(),
    )
