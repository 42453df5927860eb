"""Revoking a dataset: every chunk out of every store, and a signed receipt counting what went.

`revoke_in_partition` empties one region's partition, in this order:

1. the catalog marks the dataset revoked, so every server's next search leaves it out (the
   serving state no longer lists it, and each server then unloads what it held of it);
2. its document and chunk rows are deleted, so no search still in flight can hydrate them;
3. FAISS and BM25 files and Qdrant points are deleted, and this process's cached rerank scores;
4. its passage text is scrubbed from the stored responses an Idempotency-Key replays.

Hits, journal entries and postings stay: the ledger is history and holds no content. The dataset
row stays too (with `revoked_at`), because hits and statements refer to it; it can never be
ingested again. A revocation is final, and revoking again returns the receipt already issued.

Two entry points: `revoke_everywhere` (`fairshare datasets revoke`) visits every region the
settings know and issues one receipt over all of them; `revoke_here` (the admin route) revokes
only in the region of the server that answers, because a server never opens another region's
partition, and its receipt says so (`coverage`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from qdrant_client import QdrantClient

from contracts import (
    ConflictError,
    Dataset,
    NotFound,
    RegionRemoval,
    RevocationClaims,
    RevocationReceipt,
    StoreRemoval,
    Unavailable,
)
from contracts.revocation import Coverage
from ingest.run import dataset_lock
from ledger.catalog import CatalogStore
from ledger.receipts import ReceiptSigner, revocation_receipt
from ledger.revocations import RevocationStore
from ledger.schema import utcnow
from ranking.qdrant_index import drop_points, open_qdrant
from ranking.removal import Removed
from service.residency import database_location
from service.runtime import Runtime, open_ledger, open_runtime
from service.settings import Settings


async def revoke_in_partition(runtime: Runtime, dataset_id: str) -> RegionRemoval:
    """Remove every chunk of `dataset_id` from this runtime's region: catalog, FAISS, BM25,
    Qdrant, this process's rerank cache and stored responses; count what each gave up.

    Idempotent: on a dataset already revoked it removes what is left (nothing, unless an
    earlier run was interrupted) and keeps the first `revoked_at`. Raises NotFound for a dataset
    this region's catalog lacks, ConflictError while an ingest of it runs on this machine, and
    Unavailable when Qdrant local mode is held by another process; in each case nothing has
    changed yet."""
    dataset = await runtime.catalog.get_dataset(dataset_id)
    settings = runtime.settings
    database = database_location(settings.resolved_database_url)
    with dataset_lock(runtime.lock_dir, dataset_id, wait=False), _qdrant(runtime) as qdrant:
        store = RevocationStore(runtime.engine)
        revoked_at = await store.mark_revoked(dataset_id, utcnow())
        catalog = await store.delete_content(dataset_id)
        stores = [
            StoreRemoval(
                store="catalog", location=database, names=["documents"], items=catalog.documents
            ),
            StoreRemoval(
                store="catalog", location=database, names=["chunks"], items=catalog.chunks
            ),
        ]
        # File and Qdrant work blocks: off the event loop, as a server must keep answering.
        faiss = await asyncio.to_thread(runtime.faiss.drop, dataset_id)
        stores.append(_files_removal("faiss", runtime.faiss.root / dataset_id, faiss))
        bm25 = await asyncio.to_thread(runtime.lexical.drop, dataset_id)
        stores.append(_files_removal("bm25", runtime.lexical.root / dataset_id, bm25))
        if qdrant is not None:
            client, collection, location = qdrant
            points = await asyncio.to_thread(drop_points, client, collection, dataset_id)
            stores.append(
                StoreRemoval(store="qdrant", location=location, names=[collection], items=points)
            )
        reranker = runtime.reranker.reranker
        if reranker is not None:
            entries = reranker.cache.discard_chunks(catalog.chunk_ids)
            stores.append(StoreRemoval(store="rerank_cache", location="memory", items=entries))
        scrubbed = await store.scrub_responses(dataset_id, dataset.owner_id)
        stores.append(
            StoreRemoval(
                store="responses", location=database, names=["queries.response"], items=scrubbed
            )
        )
        await store.checkpoint()
    return RegionRemoval(region=settings.region, revoked_at=revoked_at, stores=stores)


async def revoke_here(runtime: Runtime, dataset_id: str) -> tuple[RevocationReceipt, bool]:
    """Revoke in this server's own region only; (receipt, whether it is new). A dataset already
    revoked here gets the receipt that covered this region again."""
    dataset = await runtime.catalog.get_dataset(dataset_id)
    store = RevocationStore(runtime.engine)
    if dataset.revoked_at is not None and (stored := await store.receipts(dataset_id)):
        return revocation_receipt(stored[-1], runtime.receipts.jwks()), False
    removal = await revoke_in_partition(runtime, dataset_id)
    region = runtime.settings.region
    receipt = _issue(runtime.receipts, dataset, "region", [region], [removal])
    await store.record(receipt)
    return receipt, True


async def revoke_everywhere(settings: Settings, dataset_id: str) -> tuple[RevocationReceipt, bool]:
    """Revoke in every region the settings know (`Settings.known_regions`) whose catalog holds
    the dataset, and keep one receipt over all of them in each of those regions' databases;
    (receipt, whether it is new). Regions where it is already revoked, with a receipt, are left
    as they are; if that is all of them, the newest receipt is returned again.

    If a region fails midway, the regions already emptied still get their receipt before the
    error is raised; running the command again finishes the rest."""
    visited = settings.known_regions()
    dataset: Dataset | None = None
    todo: list[str] = []
    issued: list[str] = []
    for region in visited:
        async with open_ledger(settings.for_region(region)) as engine:
            try:
                found = await CatalogStore(engine).get_dataset(dataset_id)
            except NotFound:
                continue
            stored = await RevocationStore(engine).receipts(dataset_id)
        if dataset is not None and found.owner_id != dataset.owner_id:
            raise ConflictError(
                f"dataset {dataset_id} belongs to owner {dataset.owner_id} in one region and "
                f"{found.owner_id} in region {region}: revoke it region by region "
                "(POST /v1/admin/datasets/{id}/revoke on each region's server)",
                dataset_id=dataset_id,
            )
        dataset = found
        issued += stored
        if found.revoked_at is None or not stored:
            todo.append(region)
    if dataset is None:
        raise NotFound(
            f"dataset {dataset_id} is in no region's catalog (looked in {', '.join(visited)})",
            dataset_id=dataset_id,
        )
    signer = await asyncio.to_thread(ReceiptSigner.load_or_create, settings.receipt_key_path)
    if not todo:
        receipts = [revocation_receipt(jws, signer.jwks()) for jws in issued]
        return max(receipts, key=lambda r: r.claims.issued_at), False
    removals: list[RegionRemoval] = []
    try:
        for region in todo:
            async with open_runtime(
                settings.for_region(region), with_qdrant=True, with_reranker=False
            ) as runtime:
                removals.append(await revoke_in_partition(runtime, dataset_id))
    except BaseException:
        if removals:  # what was removed is proven even though a later region failed
            await _keep(settings, _issue(signer, dataset, "every-region", visited, removals))
        raise
    receipt = _issue(signer, dataset, "every-region", visited, removals)
    await _keep(settings, receipt)
    return receipt, True


def _issue(
    signer: ReceiptSigner,
    dataset: Dataset,
    coverage: Coverage,
    visited: Sequence[str],
    removals: Sequence[RegionRemoval],
) -> RevocationReceipt:
    claims = RevocationClaims(
        revocation_id=uuid.uuid4().hex,
        dataset_id=dataset.id,
        owner_id=dataset.owner_id,
        issued_at=utcnow(),
        coverage=coverage,
        regions_visited=list(visited),
        regions=list(removals),
    )
    return RevocationReceipt(
        revocation_id=claims.revocation_id,
        dataset_id=dataset.id,
        key_id=signer.key_id,
        jws=signer.sign_revocation(claims),
        claims=claims,
    )


async def _keep(settings: Settings, receipt: RevocationReceipt) -> None:
    """Store the receipt in the database of every region it covers."""
    for removal in receipt.claims.regions:
        async with open_ledger(settings.for_region(removal.region)) as engine:
            await RevocationStore(engine).record(receipt)


def _files_removal(
    store: Literal["faiss", "bm25"], directory: Path, removed: Removed
) -> StoreRemoval:
    return StoreRemoval(
        store=store,
        location=str(directory.resolve()),
        items=removed.items,
        files=removed.files,
        bytes=removed.bytes,
    )


@contextmanager
def _qdrant(runtime: Runtime) -> Iterator[tuple[QdrantClient, str, str] | None]:
    """(client, collection, location) of this region's Qdrant: the runtime's own if it opened
    one, else opened for the revocation (a server that serves from FAISS does not hold Qdrant,
    which still has the dataset's points). None where local mode was never written here."""
    settings = runtime.settings
    local = settings.partition_dir / "qdrant"
    location = settings.qdrant_url or str(local.resolve())
    if runtime.qdrant is not None:
        yield runtime.qdrant.client, runtime.qdrant.collection, location
        return
    if not settings.qdrant_url and not local.exists():
        yield None
        return
    try:
        client = open_qdrant(url=settings.qdrant_url or None, path=local)
    except RuntimeError as exc:
        # Local mode allows one process at a time (see `service.runtime`).
        raise Unavailable(
            f"Qdrant local storage under {local} is in use by another process; nothing was "
            "revoked. Stop it (or run a Qdrant server, FAIRSHARE_QDRANT_URL) and retry."
        ) from exc
    try:
        yield client, settings.qdrant_collection, location
    finally:
        client.close()
