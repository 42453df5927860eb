"""Ledger shapes: one hit per delivered passage, and the owner's statement built from hits."""

from __future__ import annotations

from datetime import datetime

import msgspec

from contracts.types import CurrencyCode, Micros, Period


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


class DatasetLine(msgspec.Struct, frozen=True, kw_only=True):
    dataset_id: str
    dataset_name: str
    licence_id: str
    hit_count: int
    gross_micros: Micros
    owner_micros: Micros
    platform_micros: Micros


class Statement(msgspec.Struct, frozen=True, kw_only=True):
    """An owner's hits and earnings for one calendar month (UTC)."""

    owner_id: str
    owner_name: str
    period: Period
    currency: CurrencyCode
    hit_count: int
    gross_micros: Micros
    owner_micros: Micros
    platform_micros: Micros
    datasets: list[DatasetLine]
