"""Catalog shapes: who owns what, on which terms, and the documents and chunks we serve."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

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
# What a customer does with a passage. `rag`: ground a generated answer in it; `display`: show it
# to a person as a result; `summarize`: condense it; `train`: train or fine-tune a model on it.
Use = Literal["rag", "display", "summarize", "train"]
USES: tuple[str, ...] = get_args(Use)
# What a licence permits when it does not say: serving uses, not training.
DEFAULT_PERMITS: tuple[Use, ...] = ("rag", "display", "summarize")
# ISO 3166-1 alpha-2 (plus the reserved EU): where a customer is, and where content may go.
Territory = Annotated[str, Meta(pattern=r"^[A-Z]{2}$")]
# Where a deployment stores, embeds and searches content (FAIRSHARE_REGION): sg, id, eu, za...
Region = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9-]{0,31}$")]
UtcTime = Annotated[datetime, Meta(tz=True)]


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
    # Uses this licence grants; a use both permitted and prohibited is prohibited (RSL's rule).
    permits: Annotated[list[Use], Meta(max_length=len(USES))] = msgspec.field(
        default_factory=lambda: list(DEFAULT_PERMITS)
    )
    prohibits: Annotated[list[Use], Meta(max_length=len(USES))] = msgspec.field(
        default_factory=list
    )
    # Customers' territories the content may be served to; None: everywhere not excluded.
    territories: Annotated[list[Territory], Meta(max_length=300)] | None = None
    excluded_territories: Annotated[list[Territory], Meta(max_length=300)] = msgspec.field(
        default_factory=list
    )
    # Served from `valid_from` (inclusive) until `valid_until` (exclusive); None: open-ended.
    valid_from: UtcTime | None = None
    valid_until: UtcTime | None = None
    # Regions whose deployments may store, embed and search the content; None: any region.
    processing_regions: Annotated[list[Region], Meta(min_length=1, max_length=100)] | None = None

    def __post_init__(self) -> None:
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be later than valid_from")

    def canonical(self) -> Licence:
        """The same terms with every use stated once, either permitted or prohibited, and
        territories sorted: licences that mean the same compare equal (ids are immutable, so
        equality decides what is a conflicting re-use of an id)."""
        return msgspec.structs.replace(
            self,
            permits=[u for u in USES if self.allows_use(u)],  # type: ignore[misc]
            prohibits=[u for u in USES if not self.allows_use(u)],  # type: ignore[misc]
            territories=None if self.territories is None else sorted(set(self.territories)),
            excluded_territories=sorted(set(self.excluded_territories)),
            processing_regions=None
            if self.processing_regions is None
            else sorted(set(self.processing_regions)),
        )

    def allows_use(self, use: str) -> bool:
        return use in self.permits and use not in self.prohibits

    def serves(self, territory: str | None) -> bool:
        """May a customer in `territory` (None: unknown) receive this content?"""
        if territory is not None and territory in self.excluded_territories:
            return False
        return self.territories is None or (territory is not None and territory in self.territories)

    def processes_in(self, region: str) -> bool:
        """May a deployment in `region` store, embed and search this content?"""
        return self.processing_regions is None or region in self.processing_regions

    def in_force(self, at: datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= at) and (
            self.valid_until is None or at < self.valid_until
        )

    def refusal(
        self, *, use: str, territory: str | None, at: datetime, region: str | None = None
    ) -> str | None:
        """Why this licence does not let content go to this customer for this use now, from a
        deployment in `region` (None: wherever); None if it does. The reason is shown to the
        customer, so it names the rule, not the terms."""
        if region is not None and not self.processes_in(region):
            return f"licence {self.id} does not allow processing in region {region}"
        if not self.in_force(at):
            return f"licence {self.id} is not in force at {at.isoformat(timespec='seconds')}"
        if not self.allows_use(use):
            return f"licence {self.id} does not permit the use {use!r}"
        if not self.serves(territory):
            where = "an unknown territory" if territory is None else f"territory {territory}"
            return f"licence {self.id} does not allow serving customers in {where}"
        return None


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
    # When the dataset was revoked: its content is gone from every store of this region and it
    # is never served again. The row stays, because hits and statements refer to it.
    revoked_at: UtcTime | None = None


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
