"""The catalog: owners, licences, datasets, documents and chunks, as stored in SQL.

Licences are immutable (a hit must keep pointing at the terms it was priced under), so re-adding a
licence id with other terms is a conflict. Ingest replaces a dataset's documents in one
transaction guarded by the dataset's generation, so two ingests of one dataset cannot interleave.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import msgspec
from sqlalchemy import Connection, Row, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts import (
    Chunk,
    ChunkText,
    ConflictError,
    Dataset,
    Document,
    InvalidInput,
    Licence,
    NotFound,
    Owner,
)
from contracts.money import check_currency
from contracts.revocation import revoked_error
from ledger.db import read, write_transaction
from ledger.schema import chunks, datasets, documents, licences, owners, utcnow

T = TypeVar("T", bound=msgspec.Struct)
AnyRow = Row[*tuple[Any, ...]]

# Far below SQLite's 32,766 and asyncpg's 32,767 bound-parameter limits.
MAX_IDS_PER_QUERY = 5_000


class Passage(msgspec.Struct, frozen=True, kw_only=True):
    """A chunk with what a citation needs from its document."""

    chunk_id: str
    dataset_id: str
    document_id: str
    title: str
    url: str | None
    text: str
    char_start: int
    char_end: int


def validated(value: T) -> T:
    """Re-check a Struct's Meta constraints, which msgspec enforces only when decoding."""
    try:
        return msgspec.convert(msgspec.to_builtins(value), type(value))
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid {type(value).__name__.lower()}: {exc}") from exc


def _differences(old: msgspec.Struct, new: msgspec.Struct) -> list[str]:
    return [f for f in old.__struct_fields__ if getattr(old, f) != getattr(new, f)]


def _owner(row: AnyRow) -> Owner:
    return Owner(
        id=row.id,
        name=row.name,
        email=row.email,
        currency=row.currency,
        stripe_account=row.stripe_account,
    )


_LICENCE_COLUMNS = (
    licences.c.id.label("licence_id"),
    licences.c.name.label("licence_name"),
    licences.c.currency,
    licences.c.price_per_hit_micros,
    licences.c.owner_share_bps,
    licences.c.snippet_cap_chars,
    licences.c.attribution,
    licences.c.permits,
    licences.c.prohibits,
    licences.c.territories,
    licences.c.excluded_territories,
    licences.c.valid_from,
    licences.c.valid_until,
    licences.c.processing_regions,
)


def _licence_values(licence: Licence) -> dict[str, Any]:
    """The `licences` row of a canonical licence (lists stored as JSON arrays)."""
    values = msgspec.structs.asdict(licence)
    for column in ("permits", "prohibits", "excluded_territories"):
        values[column] = msgspec.json.encode(values[column]).decode()
    for column in ("territories", "processing_regions"):  # None (NULL): no restriction
        if values[column] is not None:
            values[column] = msgspec.json.encode(values[column]).decode()
    return values


def _licence(row: AnyRow) -> Licence:
    return Licence(
        id=row.licence_id,
        name=row.licence_name,
        currency=row.currency,
        price_per_hit_micros=row.price_per_hit_micros,
        owner_share_bps=row.owner_share_bps,
        snippet_cap_chars=row.snippet_cap_chars,
        attribution=row.attribution,
        permits=msgspec.json.decode(row.permits),
        prohibits=msgspec.json.decode(row.prohibits),
        territories=None if row.territories is None else msgspec.json.decode(row.territories),
        excluded_territories=msgspec.json.decode(row.excluded_territories),
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        processing_regions=None
        if row.processing_regions is None
        else msgspec.json.decode(row.processing_regions),
    )


def _dataset_query() -> Any:
    document_count = (
        select(func.count())
        .select_from(documents)
        .where(documents.c.dataset_id == datasets.c.id)
        .scalar_subquery()
    )
    chunk_count = (
        select(func.count())
        .select_from(chunks)
        .where(chunks.c.dataset_id == datasets.c.id)
        .scalar_subquery()
    )
    return select(
        datasets.c.id,
        datasets.c.owner_id,
        datasets.c.name,
        datasets.c.description,
        document_count.label("document_count"),
        chunk_count.label("chunk_count"),
        datasets.c.revoked_at,
        *_LICENCE_COLUMNS,
    ).join_from(datasets, licences, datasets.c.licence_id == licences.c.id)


def _dataset(row: AnyRow) -> Dataset:
    return Dataset(
        id=row.id,
        owner_id=row.owner_id,
        name=row.name,
        description=row.description,
        licence=_licence(row),
        document_count=row.document_count,
        chunk_count=row.chunk_count,
        revoked_at=row.revoked_at,
    )


class CatalogStore:
    """Reads and writes the catalog tables. Every method is one short transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # -- owners ----------------------------------------------------------------------------------

    async def add_owner(self, owner: Owner) -> Owner:
        """Add `owner`; re-adding identical details is a no-op, different ones a ConflictError."""
        owner = validated(owner)
        check_currency(owner.currency)
        try:
            async with write_transaction(self._engine) as conn:
                row = (await conn.execute(select(owners).where(owners.c.id == owner.id))).first()
                if row is None:
                    values = msgspec.structs.asdict(owner) | {"created_at": utcnow()}
                    await conn.execute(insert(owners), values)
                    return owner
        except IntegrityError:
            row = None  # a concurrent add of the same id won (PostgreSQL); compare with it
        existing = _owner(row) if row is not None else await self.get_owner(owner.id)
        if diff := _differences(existing, owner):
            raise ConflictError(
                f"owner {owner.id} already exists with a different {', '.join(diff)}",
                owner_id=owner.id,
            )
        return existing

    async def set_payout_account(self, owner_id: str, stripe_account: str | None) -> Owner:
        """Point the owner's payouts at another Stripe Connect account (None: hold payouts)."""
        owner = validated(
            msgspec.structs.replace(await self.get_owner(owner_id), stripe_account=stripe_account)
        )
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                update(owners).where(owners.c.id == owner_id).values(stripe_account=stripe_account)
            )
        return owner

    async def get_owner(self, owner_id: str) -> Owner:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(owners).where(owners.c.id == owner_id))).first()
        if row is None:
            raise NotFound(f"owner {owner_id} does not exist", owner_id=owner_id)
        return _owner(row)

    async def list_owners(self) -> list[Owner]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(owners).order_by(owners.c.id))).all()
        return [_owner(r) for r in rows]

    # -- datasets and licences -------------------------------------------------------------------

    async def add_dataset(
        self, *, dataset_id: str, owner_id: str, name: str, description: str, licence: Licence
    ) -> Dataset:
        """Create a dataset, or update its name, description and licence if the owner has it.

        A new licence id applies to hits from now on; past hits keep the licence they were priced
        under. Raises NotFound (owner), InvalidInput (currency or field constraints) and
        ConflictError (licence id reused with other terms, dataset id held by another owner).
        """
        licence = validated(licence).canonical()
        check_currency(licence.currency)
        probe = Dataset(
            id=dataset_id, owner_id=owner_id, name=name, description=description, licence=licence
        )
        validated(probe)
        for attempt in range(2):
            try:
                async with write_transaction(self._engine) as conn:
                    await self._write_dataset(conn, probe)
                break
            except IntegrityError:
                # A concurrent add inserted the same licence or dataset; the retry sees it.
                if attempt:
                    raise
        return await self.get_dataset(dataset_id)

    async def _write_dataset(self, conn: AsyncConnection, ds: Dataset) -> None:
        owner_row = (await conn.execute(select(owners).where(owners.c.id == ds.owner_id))).first()
        if owner_row is None:
            raise NotFound(f"owner {ds.owner_id} does not exist", owner_id=ds.owner_id)
        licence = ds.licence
        if licence.currency != owner_row.currency:
            raise InvalidInput(
                f"licence {licence.id} is priced in {licence.currency} but owner {ds.owner_id} "
                f"is paid in {owner_row.currency}; they must match"
            )
        now = utcnow()
        lic_row = (
            await conn.execute(select(*_LICENCE_COLUMNS).where(licences.c.id == licence.id))
        ).first()
        if lic_row is None:
            await conn.execute(insert(licences), _licence_values(licence) | {"created_at": now})
        elif diff := _differences(_licence(lic_row), licence):
            raise ConflictError(
                f"licence {licence.id} already exists with different terms ({', '.join(diff)}); "
                "licences are immutable, use a new id",
                licence_id=licence.id,
            )
        row = (await conn.execute(select(datasets).where(datasets.c.id == ds.id))).first()
        if row is None:
            await conn.execute(
                insert(datasets),
                {
                    "id": ds.id,
                    "owner_id": ds.owner_id,
                    "name": ds.name,
                    "description": ds.description,
                    "licence_id": licence.id,
                    "generation": 0,
                    "created_at": now,
                    "updated_at": now,
                },
            )
        elif row.owner_id != ds.owner_id:
            raise ConflictError(
                f"dataset {ds.id} already belongs to another owner", dataset_id=ds.id
            )
        elif (row.name, row.description, row.licence_id) != (ds.name, ds.description, licence.id):
            await conn.execute(
                update(datasets)
                .where(datasets.c.id == ds.id)
                .values(
                    name=ds.name, description=ds.description, licence_id=licence.id, updated_at=now
                )
            )

    async def set_licence(self, dataset_id: str, licence: Licence) -> Dataset:
        """Serve `dataset_id` under `licence` from now on (same rules as `add_dataset`)."""
        current = await self.get_dataset(dataset_id)
        return await self.add_dataset(
            dataset_id=dataset_id,
            owner_id=current.owner_id,
            name=current.name,
            description=current.description,
            licence=licence,
        )

    async def get_dataset(self, dataset_id: str) -> Dataset:
        """The dataset with its licence and current document and chunk counts."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(_dataset_query().where(datasets.c.id == dataset_id))).first()
        if row is None:
            raise NotFound(f"dataset {dataset_id} does not exist", dataset_id=dataset_id)
        return _dataset(row)

    async def list_datasets(self) -> list[Dataset]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_dataset_query().order_by(datasets.c.id))).all()
        return [_dataset(r) for r in rows]

    async def generations(self) -> dict[str, int]:
        """Dataset id -> generation; a search compares it with its index to detect staleness."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(datasets.c.id, datasets.c.generation))).all()
        return {r.id: r.generation for r in rows}

    async def serving_state(self) -> dict[str, tuple[int, str]]:
        """Dataset id -> (generation, licence id): one cheap query a search can afford, telling
        whether anything that affects what it serves or how it prices has changed. Revoked
        datasets are left out: nothing of them is served, from the moment they are revoked."""
        rows = await read(self._engine, lambda conn: conn.execute(_SERVING_STATE).all())
        return {r.id: (r.generation, r.licence_id) for r in rows}

    # -- documents and chunks --------------------------------------------------------------------

    async def document_hashes(self, dataset_id: str) -> dict[str, str]:
        """Document id -> content hash of what is stored ({} for an unknown dataset)."""
        query = select(documents.c.id, documents.c.content_hash).where(
            documents.c.dataset_id == dataset_id
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {r.id: r.content_hash for r in rows}

    async def chunk_texts(self, dataset_id: str) -> list[ChunkText]:
        """Every chunk of a dataset with what its indexes need, ordered by document id and
        ordinal. Ingest needs the document id to tell which chunks it replaces."""
        query = (
            select(
                chunks.c.id,
                chunks.c.document_id,
                documents.c.title,
                chunks.c.text,
                documents.c.language,
            )
            .join_from(chunks, documents, _chunk_document_join())
            .where(chunks.c.dataset_id == dataset_id)
            .order_by(chunks.c.document_id, chunks.c.ordinal)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            ChunkText(
                chunk_id=r[0], document_id=r[1], title=r[2], text=r[3], language=r[4] or "und"
            )
            for r in rows
        ]

    async def commit_ingest(
        self,
        *,
        dataset_id: str,
        expected_generation: int,
        upserts: Sequence[tuple[Document, str, Sequence[Chunk]]],
        deletes: Sequence[str],
    ) -> int:
        """Replace the upserted documents (and all their chunks), delete `deletes`; return the
        new generation. All or nothing. ConflictError if the generation moved since the caller
        read it (another ingest won) or a chunk id belongs to a document not being replaced."""
        doc_rows, chunk_rows = _ingest_rows(dataset_id, upserts, deletes)
        touched = [{"d": dataset_id, "doc": d["id"]} for d in doc_rows]
        touched += [{"d": dataset_id, "doc": doc_id} for doc_id in deletes]
        try:
            async with write_transaction(self._engine) as conn:
                bumped = await conn.execute(
                    update(datasets)
                    .where(
                        datasets.c.id == dataset_id,
                        datasets.c.generation == expected_generation,
                        # A revocation that began after this ingest read the generation wins.
                        datasets.c.revoked_at.is_(None),
                    )
                    .values(generation=datasets.c.generation + 1, updated_at=utcnow())
                )
                if bumped.rowcount != 1:
                    await self._raise_generation_error(conn, dataset_id)
                if doc_rows:
                    created = await self._created_at(conn, dataset_id)
                    for row in doc_rows:
                        row["created_at"] = created.get(row["id"], row["updated_at"])
                if touched:
                    # Explicit chunk delete, not only ON DELETE CASCADE: correct even on a
                    # connection where someone turned SQLite's foreign_keys pragma off.
                    await conn.execute(
                        delete(chunks).where(
                            chunks.c.dataset_id == bindparam("d"),
                            chunks.c.document_id == bindparam("doc"),
                        ),
                        touched,
                    )
                    await conn.execute(
                        delete(documents).where(
                            documents.c.dataset_id == bindparam("d"),
                            documents.c.id == bindparam("doc"),
                        ),
                        touched,
                    )
                if doc_rows:
                    await conn.execute(insert(documents), doc_rows)
                if chunk_rows:
                    await conn.execute(insert(chunks), chunk_rows)
        except IntegrityError as exc:
            raise ConflictError(
                f"ingest of dataset {dataset_id} clashes with stored data (a chunk id already "
                f"used by another document?): {exc.orig}",
                dataset_id=dataset_id,
            ) from exc
        return expected_generation + 1

    @staticmethod
    async def _raise_generation_error(conn: AsyncConnection, dataset_id: str) -> None:
        found = (
            await conn.execute(
                select(datasets.c.generation, datasets.c.revoked_at).where(
                    datasets.c.id == dataset_id
                )
            )
        ).first()
        if found is None:
            raise NotFound(f"dataset {dataset_id} does not exist", dataset_id=dataset_id)
        if found.revoked_at is not None:
            raise revoked_error(dataset_id, found.revoked_at)
        raise ConflictError(
            f"dataset {dataset_id} was changed by another ingest; retry",
            dataset_id=dataset_id,
            generation=found.generation,
        )

    @staticmethod
    async def _created_at(conn: AsyncConnection, dataset_id: str) -> dict[str, Any]:
        rows = await conn.execute(
            select(documents.c.id, documents.c.created_at).where(
                documents.c.dataset_id == dataset_id
            )
        )
        return {r.id: r.created_at for r in rows}

    async def get_passages(self, chunk_ids: Sequence[str]) -> dict[str, Passage]:
        """Chunk id -> Passage for the ids that exist; unknown ids are left out."""
        wanted = list(dict.fromkeys(chunk_ids))

        def fetch(conn: Connection) -> dict[str, Passage]:
            found: dict[str, Passage] = {}
            for start in range(0, len(wanted), MAX_IDS_PER_QUERY):
                batch = wanted[start : start + MAX_IDS_PER_QUERY]
                rows = conn.execute(_PASSAGES, {"ids": batch})
                found.update((r.chunk_id, _passage(r)) for r in rows)
            return found

        return await read(self._engine, fetch)

    async def chunk_datasets(self, chunk_ids: Sequence[str]) -> dict[str, str]:
        """Chunk id -> dataset id for the ids the catalog holds; unknown ids are left out."""
        wanted = list(dict.fromkeys(chunk_ids))
        found: dict[str, str] = {}
        async with self._engine.connect() as conn:
            for start in range(0, len(wanted), MAX_IDS_PER_QUERY):
                batch = wanted[start : start + MAX_IDS_PER_QUERY]
                rows = await conn.execute(
                    select(chunks.c.id, chunks.c.dataset_id).where(chunks.c.id.in_(batch))
                )
                found.update((r.id, r.dataset_id) for r in rows)
        return found

    async def get_chunk(self, chunk_id: str) -> Passage:
        passages = await self.get_passages([chunk_id])
        if chunk_id not in passages:
            raise NotFound(f"chunk {chunk_id} does not exist", chunk_id=chunk_id)
        return passages[chunk_id]


def _chunk_document_join() -> Any:
    return (chunks.c.dataset_id == documents.c.dataset_id) & (
        chunks.c.document_id == documents.c.id
    )


# Run by every search (state) and for every page of its results (passages): built once, since
# building a SQLAlchemy expression costs more Python than running the cached compiled form.
_SERVING_STATE = select(datasets.c.id, datasets.c.generation, datasets.c.licence_id).where(
    datasets.c.revoked_at.is_(None)
)
_PASSAGES = (
    select(
        chunks.c.id.label("chunk_id"),
        chunks.c.dataset_id,
        chunks.c.document_id,
        documents.c.title,
        documents.c.url,
        chunks.c.text,
        chunks.c.char_start,
        chunks.c.char_end,
    )
    .join_from(chunks, documents, _chunk_document_join())
    .where(chunks.c.id.in_(bindparam("ids", expanding=True)))
)


def _passage(row: AnyRow) -> Passage:
    return Passage(
        chunk_id=row.chunk_id,
        dataset_id=row.dataset_id,
        document_id=row.document_id,
        title=row.title,
        url=row.url,
        text=row.text,
        char_start=row.char_start,
        char_end=row.char_end,
    )


def _ingest_rows(
    dataset_id: str,
    upserts: Sequence[tuple[Document, str, Sequence[Chunk]]],
    deletes: Sequence[str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Check an ingest batch and turn it into rows. Spans must index the stored text exactly,
    or every citation built from them would point at the wrong characters."""
    now = utcnow()
    doc_rows: list[dict[str, Any]] = []
    chunk_rows: list[dict[str, Any]] = []
    seen_chunks: set[str] = set()
    for document, content_hash, doc_chunks in upserts:
        for chunk in doc_chunks:
            where = f"chunk {chunk.id} of document {document.id}"
            if (chunk.dataset_id, chunk.document_id) != (dataset_id, document.id):
                raise InvalidInput(
                    f"{where} names dataset {chunk.dataset_id!r}, document {chunk.document_id!r}"
                )
            if not 0 <= chunk.char_start <= chunk.char_end <= len(document.text):
                raise InvalidInput(
                    f"{where} has span {chunk.char_start}:{chunk.char_end} "
                    f"outside the document ({len(document.text)} chars)"
                )
            if document.text[chunk.char_start : chunk.char_end] != chunk.text:
                raise InvalidInput(f"{where}: text differs from the document at its span")
            if chunk.id in seen_chunks:
                raise InvalidInput(f"chunk id {chunk.id} appears twice in one ingest")
            seen_chunks.add(chunk.id)
            chunk_rows.append(msgspec.structs.asdict(chunk))
        doc_rows.append(_document_row(dataset_id, document, content_hash, now))
    doc_ids = [d["id"] for d in doc_rows]
    if len(set(doc_ids)) != len(doc_ids):
        raise InvalidInput("a document id appears twice in one ingest")
    if both := set(doc_ids) & set(deletes):
        raise InvalidInput(f"documents both upserted and deleted: {sorted(both)[:5]}")
    return doc_rows, chunk_rows


def _document_row(
    dataset_id: str, document: Document, content_hash: str, now: Any
) -> dict[str, Any]:
    row: Mapping[str, Any] = msgspec.structs.asdict(document)
    return {
        **row,
        "dataset_id": dataset_id,
        "metadata": msgspec.json.encode(document.metadata).decode(),
        "content_hash": content_hash,
        "created_at": now,
        "updated_at": now,
    }
