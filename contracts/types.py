"""Constrained scalar types shared by every contract."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

# Slugs are ids chosen by people (owners, datasets, licences, documents): stable, URL-safe.
Slug = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9._-]{0,127}$", max_length=128)]
# ISO 4217 alphabetic code. Which codes exist is checked in contracts.money.
CurrencyCode = Annotated[str, Meta(pattern=r"^[A-Z]{3}$")]
Micros = Annotated[int, Meta(ge=0, le=10**15)]
BasisPoints = Annotated[int, Meta(ge=0, le=10_000)]
Period = Annotated[str, Meta(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]
