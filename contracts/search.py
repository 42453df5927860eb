"""The search request and response: the product's main contract."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from contracts.catalog import Use
from contracts.languages import Languages, unknown_languages
from contracts.types import CurrencyCode, Micros, Slug

MAX_TOP_K = 50
Query = Annotated[str, Meta(min_length=1, max_length=4_096)]


class SearchRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """`POST /v1/search` body. `rerank=None` means "rerank when a reranker is loaded";
    `datasets=None` means every dataset the account can pay for (an empty list is an error)."""

    query: Query
    top_k: Annotated[int, Meta(ge=1, le=MAX_TOP_K)] = 10
    datasets: Annotated[list[Slug], Meta(min_length=1, max_length=100)] | None = None
    max_cost_micros: Micros | None = None
    rerank: bool | None = None
    # What the passages will be used for; only licences that permit it are searched.
    # None is taken as "rag", this API's purpose (see `effective_use`).
    intended_use: Use | None = None
    # Only chunks in these languages (ISO 639-1, or "und": language not detected at ingest), in
    # both the dense and the BM25 candidates. None: every language.
    languages: Languages | None = None

    def __post_init__(self) -> None:
        # The pattern checks a code's shape; this, that it exists ("xx" has the shape).
        unknown = unknown_languages(self.languages or ())
        if unknown:
            raise ValueError(
                f"languages: unknown language code(s) {', '.join(map(repr, unknown))}; use "
                f'ISO 639-1 codes such as "de" or "th", or "und" for text whose language '
                f"could not be detected"
            )

    @property
    def effective_use(self) -> Use:
        return self.intended_use or "rag"


class Citation(msgspec.Struct, frozen=True, kw_only=True):
    """Where a passage comes from. `char_start:char_end` spans exactly the delivered text in the
    source document, and `attribution` must accompany the passage wherever it is shown."""

    dataset_id: str
    owner_id: str
    owner_name: str
    document_id: str
    title: str
    url: str | None
    char_start: int
    char_end: int
    licence_id: str
    attribution: str


class SearchResult(msgspec.Struct, frozen=True, kw_only=True):
    chunk_id: str
    text: str
    score: float
    price_micros: int
    citation: Citation


class Timings(msgspec.Struct, frozen=True, kw_only=True):
    """Wall-clock milliseconds per stage of this request."""

    embed: float
    retrieve: float
    rerank: float
    total: float


class Withheld(msgspec.Struct, frozen=True, kw_only=True):
    """A dataset the request named whose licence did not allow serving it; nothing was charged."""

    dataset_id: str
    reason: str


class SearchResponse(msgspec.Struct, frozen=True, kw_only=True):
    query_id: str
    results: list[SearchResult]
    cost_micros: Micros
    currency: CurrencyCode
    reranked: bool
    timings_ms: Timings
    # Ed25519-signed JWS over query_id, every charged passage and the amounts; check it offline
    # against the key at /v1/keys/receipts.
    receipt: str = ""
    # The use the passages were licensed for (the request's `intended_use`, or "rag").
    intended_use: str = "rag"
    withheld: list[Withheld] = msgspec.field(default_factory=list)
    # The query's language (ISO 639-1) when the detector is confident, else "und". Short queries
    # are often misdetected, so it never filters anything: to choose languages, send `languages`.
    query_language: str = "und"
