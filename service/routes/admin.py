"""Admin routes: owners, datasets and API keys."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import get, post
from msgspec import Meta

from contracts import Dataset, Licence, Owner
from contracts.types import CurrencyCode, Slug
from ledger.keys import Principal
from service.auth import require_role
from service.runtime import Runtime


class DatasetCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: Slug
    owner_id: Slug
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    licence: Licence
    description: Annotated[str, Meta(max_length=2_000)] = ""


class KeyCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    customer: Annotated[str, Meta(min_length=1, max_length=200)]
    role: Literal["agent", "owner", "admin"]
    owner_id: Slug | None = None
    currency: CurrencyCode = "USD"
    # Limit the key to these datasets; absent: every dataset.
    datasets: Annotated[list[Slug], Meta(min_length=1, max_length=100)] | None = None


class KeyCreated(msgspec.Struct, frozen=True, kw_only=True):
    """The key itself appears here once and is stored only as a hash."""

    key_id: str
    customer_id: str
    role: str
    owner_id: str | None
    api_key: str
    datasets: list[str] | None = None


@post("/v1/owners", status_code=201, summary="Add an owner (idempotent)")
async def add_owner(data: Owner, runtime: Runtime, principal: Principal) -> Owner:
    require_role(principal, "admin")
    return await runtime.catalog.add_owner(data)


@get("/v1/owners", summary="List owners")
async def list_owners(runtime: Runtime, principal: Principal) -> list[Owner]:
    require_role(principal, "admin")
    return await runtime.catalog.list_owners()


@post("/v1/datasets", status_code=201, summary="Add a dataset with its licence (idempotent)")
async def add_dataset(data: DatasetCreate, runtime: Runtime, principal: Principal) -> Dataset:
    require_role(principal, "admin")
    return await runtime.catalog.add_dataset(
        dataset_id=data.id,
        owner_id=data.owner_id,
        name=data.name,
        description=data.description,
        licence=data.licence,
    )


@post("/v1/keys", status_code=201, summary="Create an API key")
async def create_key(data: KeyCreate, runtime: Runtime, principal: Principal) -> KeyCreated:
    require_role(principal, "admin")
    created, plaintext = await runtime.keys.create_key(
        customer=data.customer,
        role=data.role,
        owner_id=data.owner_id,
        currency=data.currency,
        datasets=data.datasets,
    )
    return KeyCreated(
        key_id=created.key_id,
        customer_id=created.customer_id,
        role=created.role,
        owner_id=created.owner_id,
        api_key=plaintext,
        datasets=None if created.datasets is None else sorted(created.datasets),
    )
