"""Builders for ledger tests: real rows, written through the public API."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

from contracts import Chunk, Document, Hit, Licence, Owner, split_price
from ledger.catalog import CatalogStore
from ledger.hits import HitLedger

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def owner(owner_id: str = "acme", currency: str = "USD", name: str = "Acme Press") -> Owner:
    return Owner(id=owner_id, name=name, email=f"{owner_id}@example.org", currency=currency)


def licence(
    licence_id: str = "std-v1",
    price: int = 2_000,
    share_bps: int = 7_000,
    currency: str = "USD",
) -> Licence:
    return Licence(
        id=licence_id,
        name=f"Licence {licence_id}",
        currency=currency,
        price_per_hit_micros=price,
        owner_share_bps=share_bps,
        snippet_cap_chars=1_000,
        attribution="© Acme Press, used under licence",
    )


def document(doc_id: str, text: str, title: str | None = None) -> Document:
    return Document(
        id=doc_id,
        title=title or f"Title of {doc_id}",
        text=text,
        url=f"https://example.org/{doc_id}",
        language="en",
        metadata={"year": 2024, "tags": "a,b"},
    )


def chunked(
    dataset_id: str, doc: Document, size: int = 10, prefix: str = ""
) -> tuple[Document, str, list[Chunk]]:
    """The document split into `size`-character chunks, as ingest would hand it over."""
    pieces = [
        Chunk(
            id=f"{prefix}{dataset_id}:{doc.id}:{n}",
            dataset_id=dataset_id,
            document_id=doc.id,
            ordinal=n,
            text=doc.text[start : start + size],
            char_start=start,
            char_end=min(start + size, len(doc.text)),
        )
        for n, start in enumerate(range(0, len(doc.text), size))
    ]
    return doc, hashlib.sha256(doc.text.encode()).hexdigest(), pieces


async def seed_dataset(
    catalog: CatalogStore,
    dataset_id: str = "guides",
    owner_id: str = "acme",
    lic: Licence | None = None,
) -> None:
    await catalog.add_owner(owner(owner_id))
    await catalog.add_dataset(
        dataset_id=dataset_id,
        owner_id=owner_id,
        name=f"Dataset {dataset_id}",
        description="test data",
        licence=lic or licence(),
    )


def hit(
    query_id: str,
    rank: int,
    *,
    price: int = 2_000,
    share_bps: int = 7_000,
    customer_id: str = "cus_1",
    dataset_id: str = "guides",
    owner_id: str = "acme",
    licence_id: str = "std-v1",
    currency: str = "USD",
    at: datetime = T0,
) -> Hit:
    owner_micros, platform_micros = split_price(price, share_bps)
    return Hit(
        query_id=query_id,
        customer_id=customer_id,
        chunk_id=f"{dataset_id}:doc:{rank}",
        document_id="doc",
        dataset_id=dataset_id,
        owner_id=owner_id,
        licence_id=licence_id,
        rank=rank,
        price_micros=price,
        owner_micros=owner_micros,
        platform_micros=platform_micros,
        currency=currency,
        created_at=at,
    )


async def record(
    ledger: HitLedger,
    query_id: str,
    hits: Sequence[Hit],
    *,
    customer_id: str = "cus_1",
    idempotency_key: str | None = None,
    request_hash: str = "req-hash",
    response: bytes | None = None,
) -> bytes:
    return await ledger.record(
        query_id=query_id,
        customer_id=customer_id,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        response=response if response is not None else f"response {query_id}".encode(),
        cost_micros=sum(h.price_micros for h in hits),
        currency=hits[0].currency if hits else "USD",
        hits=hits,
    )
