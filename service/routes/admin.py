"""Admin routes: owners, datasets (and their revocation) and API keys."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Response, get, post
from litestar.openapi import ResponseSpec
from msgspec import Meta

from contracts import Dataset, Licence, Owner, RevocationReceipt
from contracts.types import CurrencyCode, Slug
from ledger.keys import Principal
from service.auth import require_role
from service.problems import problem_responses
from service.revocation import revoke_here
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


@post(
    "/v1/admin/datasets/{dataset_id:str}/revoke",
    status_code=201,
    summary="Revoke a dataset in this server's region: delete its content, sign a receipt",
    description="Removes every chunk of the dataset from this region's catalog, FAISS, BM25 and "
    "Qdrant stores and caches, scrubs its passage text from stored responses, and stops serving "
    "it at once; hits and the ledger stay. The answer is a deletion receipt signed with the "
    "receipt key (`/v1/keys/receipts`) counting what each store gave up. Only this server's "
    "region is covered: `fairshare datasets revoke` covers every region. Revoking an already "
    "revoked dataset returns its receipt again (200). Irreversible: it cannot be ingested again.",
    responses={
        200: ResponseSpec(
            data_container=RevocationReceipt,
            description="Already revoked in this region: the receipt issued then",
        ),
        **problem_responses(503),
    },
)
async def revoke_dataset(
    dataset_id: str, runtime: Runtime, principal: Principal
) -> Response[RevocationReceipt]:
    require_role(principal, "admin")
    receipt, new = await revoke_here(runtime, dataset_id)
    return Response(receipt, status_code=201 if new else 200)


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
