"""Ledger shapes: hits, receipts, statements and payouts.

Amounts are integer micros of one currency. A statement is built from the ledger's postings and
always adds up: `payable_micros = carried_in_micros + net_owner_micros` and
`carried_forward_micros = payable_micros - payout_micros`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from contracts.types import BasisPoints, CurrencyCode, Micros, Period

# Signed micros: reversals and carried balances can be negative.
SignedMicros = int

PayoutState = Literal["pending", "submitted", "paid", "failed"]
ReversalReason = Literal["bad_result", "duplicate_charge", "licence_error", "goodwill", "other"]
REVERSAL_REASONS: tuple[str, ...] = ReversalReason.__args__  # type: ignore[attr-defined]


class Hit(msgspec.Struct, frozen=True, kw_only=True):
    """One delivered passage. `owner_micros + platform_micros == price_micros` always."""

    query_id: str
    customer_id: str
    chunk_id: str
    document_id: str
    dataset_id: str
    owner_id: str
    licence_id: str
    rank: int
    price_micros: Micros
    owner_micros: Micros
    platform_micros: Micros
    currency: CurrencyCode
    created_at: datetime
    # Residency audit: the region whose deployment processed the search, and the customer's
    # jurisdiction (ISO 3166-1 alpha-2) then. None: recorded before they were kept, or unknown.
    region: str | None = None
    territory: str | None = None


class ReceiptLine(msgspec.Struct, frozen=True, kw_only=True):
    """One charged passage as the receipt states it."""

    rank: int
    chunk_id: str
    document_id: str
    dataset_id: str
    owner_id: str
    licence_id: str
    price_micros: Micros
    owner_micros: Micros
    platform_micros: Micros


class ReceiptClaims(msgspec.Struct, frozen=True, kw_only=True):
    """What a search receipt signs: the query, every charged passage and the amounts."""

    query_id: str
    customer_id: str
    issued_at: datetime
    currency: CurrencyCode
    cost_micros: Micros
    hits: list[ReceiptLine]
    # The use the customer stated (or "rag"): the licence permission the hits were served under.
    intended_use: str = "rag"


class LicenceTerms(msgspec.Struct, frozen=True, kw_only=True):
    """The terms that priced a statement's hits."""

    licence_id: str
    name: str
    currency: CurrencyCode
    price_per_hit_micros: Micros
    owner_share_bps: BasisPoints
    snippet_cap_chars: int
    attribution: str


class DatasetLine(msgspec.Struct, frozen=True, kw_only=True):
    """Hits of one dataset under one licence in the period (reversals not netted)."""

    dataset_id: str
    dataset_name: str
    licence_id: str
    hit_count: int
    gross_micros: Micros
    owner_micros: Micros
    platform_micros: Micros


class RegionLine(msgspec.Struct, frozen=True, kw_only=True):
    """Hits the deployments of one region processed in the period (reversals not netted).
    `region` None: hits recorded before regions were kept."""

    region: str | None
    hit_count: int
    gross_micros: Micros
    owner_micros: Micros
    platform_micros: Micros


class DocumentLine(msgspec.Struct, frozen=True, kw_only=True):
    dataset_id: str
    document_id: str
    title: str
    hit_count: int
    gross_micros: Micros
    owner_micros: Micros


class DayLine(msgspec.Struct, frozen=True, kw_only=True):
    """One UTC calendar day of the period's hits (days without hits are listed with zeros)."""

    day: str  # YYYY-MM-DD
    hit_count: int
    gross_micros: Micros
    owner_micros: Micros


class Payout(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt to pay an owner for a period. `amount_micros` is a whole number of the
    currency's minor units; `transfer_id` is the gateway's id once the transfer exists."""

    payout_id: str
    owner_id: str
    period: Period
    attempt: int
    currency: CurrencyCode
    amount_micros: Micros
    destination: str
    state: PayoutState
    transfer_id: str | None = None
    failure: str | None = None
    created_at: datetime
    updated_at: datetime


class Statement(msgspec.Struct, frozen=True, kw_only=True):
    """An owner's hits, earnings and payout for one accounting period.

    `closed` is False while the period is still open: the figures are then provisional.
    """

    owner_id: str
    owner_name: str
    period: Period
    currency: CurrencyCode
    closed: bool
    hit_count: int
    gross_micros: Micros
    owner_micros: Micros
    platform_micros: Micros
    reversal_count: int
    reversed_owner_micros: Micros  # owner share taken back by reversals booked in this period
    net_owner_micros: SignedMicros  # owner_micros - reversed_owner_micros
    carried_in_micros: SignedMicros  # owed from earlier periods and not paid out
    payable_micros: SignedMicros
    payout_micros: Micros  # 0 when no payout was made for this period
    carried_forward_micros: SignedMicros  # rounding and below-minimum amounts, owed next period
    payout: Payout | None
    datasets: list[DatasetLine]
    documents: list[DocumentLine]  # top 20 by gross, then hits
    days: list[DayLine]
    licences: list[LicenceTerms]
    regions: list[RegionLine] = msgspec.field(default_factory=list)
