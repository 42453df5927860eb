"""Catalog shapes: who owns what, on which terms, and the documents and chunks we serve."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from contracts.types import BasisPoints, CurrencyCode, Micros, Slug

Text = Annotated[str, Meta(min_length=1, max_length=2_000_000)]
# Document ids come from publishers' systems ("MED-10", "2026/03/cap.md"), so any printable id
# without whitespace is accepted; they are never used as paths or URL segments by us.
DocumentId = Annotated[str, Meta(min_length=1, max_length=256, pattern=r"^[^\s\x00-\x1f]+$")]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
MetadataValue = str | int | float | bool | None
StripeAccount = Annotated[str, Meta(pattern=r"^acct_[A-Za-z0-9]{1,64}$")]


class Licence(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Terms on which an owner licenses one dataset. Immutable: new terms are a new licence id,
    so every hit keeps pointing at the terms it was priced under."""

    id: Slug
    name: Name
    currency: CurrencyCode
    price_per_hit_micros: Micros
    owner_share_bps: BasisPoints
    snippet_cap_chars: Annotated[int, Meta(ge=1, le=100_000)]
    attribution: Annotated[str, Meta(min_length=1, max_length=1_000)]


class Owner(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A publisher paid for hits on its datasets. One currency per owner: the one it is paid in."""

    id: Slug
    name: Name
    email: Annotated[str, Meta(max_length=320)] = ""
    currency: CurrencyCode = "USD"
    # Stripe Connect account that receives payouts. None: earnings are carried forward until set.
    stripe_account: StripeAccount | None = None


class Dataset(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A licensed collection of documents belonging to one owner."""

    id: Slug
    owner_id: Slug
    name: Name
    licence: Licence
    description: Annotated[str, Meta(max_length=2_000)] = ""
    document_count: Annotated[int, Meta(ge=0)] = 0
    chunk_count: Annotated[int, Meta(ge=0)] = 0


class Document(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One source record as ingested. `text` is kept verbatim: chunk spans index into it."""

    id: DocumentId
    title: Annotated[str, Meta(max_length=1_000)] = ""
    text: Text
    url: Annotated[str, Meta(max_length=2_000)] | None = None
    published_at: Annotated[str, Meta(max_length=40)] | None = None
    language: Annotated[str, Meta(max_length=16)] | None = None
    metadata: dict[str, MetadataValue] = msgspec.field(default_factory=dict)


class Chunk(msgspec.Struct, frozen=True, kw_only=True):
    """A window of a document. `text == document.text[char_start:char_end]` always holds."""

    id: str
    dataset_id: str
    document_id: str
    ordinal: Annotated[int, Meta(ge=0)]
    text: str
    char_start: Annotated[int, Meta(ge=0)]
    char_end: Annotated[int, Meta(ge=0)]


class ChunkText(msgspec.Struct, frozen=True, kw_only=True):
    """What the indexes of a dataset are rebuilt from: a chunk, its title and its language."""

    chunk_id: str
    document_id: str
    title: str
    text: str
    language: str
