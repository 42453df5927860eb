"""Revocation in the SQL store: mark a dataset revoked, delete its documents and chunks, scrub its
passage text from stored responses, and keep the signed deletion receipts.

Ledger history is kept whole: hits, journal entries and postings name chunk, document and dataset
ids and amounts, never content, so every charge stays as it was and `fairshare ledger verify`
still passes. The one write to a ledger table is `scrub_responses`: `queries.response` holds the
exact bytes an Idempotency-Key replays, passage text included, and that text must not outlive
the revocation. Those bytes are outside the hash chain (which covers hit rows), and a trigger
(migration 0005) lets `response`, and only it, change, and only for a query with a hit on a
revoked dataset.

On SQLite the deletes and the scrub run with `secure_delete`, so freed pages are overwritten
rather than left holding the text, and the write-ahead log is checkpointed afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import bindparam, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts import NotFound, RevocationReceipt
from ledger.db import ledger_transaction, write_transaction
from ledger.schema import chunks, datasets, documents, hits, queries, revocations, utcnow

# Stored responses read and rewritten per statement: bounded memory for a dataset with many hits.
SCRUB_BATCH = 500


@dataclass(frozen=True, slots=True)
class CatalogRemoval:
    documents: int
    chunks: int
    chunk_ids: list[str]  # what caches keyed by chunk must forget


class RevocationStore:
    """The SQL side of revoking one dataset, in one region's database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def mark_revoked(self, dataset_id: str, at: datetime) -> datetime:
        """Stop serving the dataset: set `revoked_at` (once; a dataset already revoked keeps its
        first time, which is returned). Every server's next search leaves it out. NotFound if
        the dataset does not exist."""
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                update(datasets)
                .where(datasets.c.id == dataset_id, datasets.c.revoked_at.is_(None))
                .values(revoked_at=at, updated_at=at)
            )
            revoked = (
                await conn.execute(select(datasets.c.revoked_at).where(datasets.c.id == dataset_id))
            ).first()
        if revoked is None:
            raise NotFound(f"dataset {dataset_id} does not exist", dataset_id=dataset_id)
        when: datetime = revoked.revoked_at
        return when

    async def delete_content(self, dataset_id: str) -> CatalogRemoval:
        """Delete every document and chunk row of the dataset, counting them."""
        async with write_transaction(self._engine) as conn, _secure_delete(conn):
            chunk_ids = list(
                (
                    await conn.execute(select(chunks.c.id).where(chunks.c.dataset_id == dataset_id))
                ).scalars()
            )
            document_count = (
                await conn.execute(
                    select(func.count())
                    .select_from(documents)
                    .where(documents.c.dataset_id == dataset_id)
                )
            ).scalar_one()
            await conn.execute(delete(chunks).where(chunks.c.dataset_id == dataset_id))
            await conn.execute(delete(documents).where(documents.c.dataset_id == dataset_id))
        return CatalogRemoval(int(document_count), len(chunk_ids), chunk_ids)

    async def scrub_responses(self, dataset_id: str, owner_id: str) -> int:
        """Remove the dataset's passage text from every stored response that delivered any of
        it; return how many responses changed (0 for those already scrubbed).

        Under the ledger lock, so no search can be booking a response meanwhile. A replay of
        such a query then returns the scrubbed bytes: the same query id, prices, citation ids,
        spans and signed receipt, with `text` and the citation's `title` empty and `url` null
        for the revoked dataset's passages (`scrub_response`).
        """
        # `owner_id` too, so the statements' (owner_id, created_at) index finds the hits.
        query_ids = (
            select(hits.c.query_id)
            .where(hits.c.owner_id == owner_id, hits.c.dataset_id == dataset_id)
            .distinct()
        )
        changed = 0
        async with ledger_transaction(self._engine) as conn, _secure_delete(conn):
            ids = list((await conn.execute(query_ids)).scalars())
            for start in range(0, len(ids), SCRUB_BATCH):
                rows = await conn.execute(
                    select(queries.c.query_id, queries.c.response).where(
                        queries.c.query_id.in_(ids[start : start + SCRUB_BATCH])
                    )
                )
                rewritten = [
                    {"q": row.query_id, "r": scrubbed}
                    for row in rows
                    if (scrubbed := scrub_response(bytes(row.response), dataset_id)) is not None
                ]
                if rewritten:
                    await conn.execute(
                        update(queries)
                        .where(queries.c.query_id == bindparam("q"))
                        .values(response=bindparam("r")),
                        rewritten,
                    )
                    changed += len(rewritten)
        return changed

    async def checkpoint(self) -> None:
        """SQLite: copy the write-ahead log into the database file and truncate it, so the log
        no longer holds pages from before the deletes. Best effort: a reader still on an old
        snapshot (a running server) can hold part of the log back until its next checkpoint."""
        if self._engine.dialect.name != "sqlite":
            return
        async with self._engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    async def record(self, receipt: RevocationReceipt, created_at: datetime | None = None) -> None:
        """Keep a signed deletion receipt (again: a no-op)."""
        async with write_transaction(self._engine) as conn:
            found = await conn.execute(
                select(revocations.c.revocation_id).where(
                    revocations.c.revocation_id == receipt.revocation_id
                )
            )
            if found.first() is None:
                await conn.execute(
                    insert(revocations),
                    {
                        "revocation_id": receipt.revocation_id,
                        "dataset_id": receipt.dataset_id,
                        "owner_id": receipt.claims.owner_id,
                        "receipt": receipt.jws,
                        "created_at": created_at or utcnow(),
                    },
                )

    async def receipts(self, dataset_id: str) -> list[str]:
        """The dataset's stored deletion receipts (JWS), oldest first."""
        query = (
            select(revocations.c.receipt)
            .where(revocations.c.dataset_id == dataset_id)
            .order_by(revocations.c.created_at, revocations.c.revocation_id)
        )
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).scalars())


def scrub_response(body: bytes, dataset_id: str) -> bytes | None:
    """`body` (a stored search response) without the passage text, title and URL of
    `dataset_id`'s results; None when it has none left to remove.

    Decoded as plain JSON, not as `SearchResponse`, so members a newer server added survive;
    msgspec writes untouched values back byte for byte."""
    try:
        response: Any = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None  # not a response we wrote; nothing to recognise in it
    changed = False
    results = response.get("results") if isinstance(response, dict) else None
    for result in results if isinstance(results, list) else []:
        citation = result.get("citation") if isinstance(result, dict) else None
        if not isinstance(citation, dict) or citation.get("dataset_id") != dataset_id:
            continue
        if result.get("text") or citation.get("title") or citation.get("url") is not None:
            result["text"] = ""
            citation["title"] = ""
            citation["url"] = None
            changed = True
    return msgspec.json.encode(response) if changed else None


@asynccontextmanager
async def _secure_delete(conn: AsyncConnection) -> AsyncIterator[None]:
    """SQLite: overwrite what this connection deletes or rewrites with zeros, instead of leaving
    it in free pages of the file; restored afterwards (the connection goes back to the pool)."""
    if conn.dialect.name != "sqlite":
        yield
        return
    before = (await conn.execute(text("PRAGMA secure_delete"))).scalar_one()
    await conn.execute(text("PRAGMA secure_delete = ON"))
    try:
        yield
    finally:
        await conn.execute(text(f"PRAGMA secure_delete = {int(before)}"))
