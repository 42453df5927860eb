"""Catalog reads: datasets with their terms, single chunks, and revoked datasets' receipts."""

from __future__ import annotations

from collections.abc import Sequence

from litestar import get

from contracts import Dataset, RevocationReceipt
from contracts.views import ChunkView
from ledger.keys import Principal
from ledger.receipts import revocation_receipt
from ledger.revocations import RevocationStore
from service.auth import require_owner_access
from service.runtime import Runtime
from service.searching import cap_snippet, cite


@get("/v1/datasets", summary="The catalog: datasets, owners, licence terms and prices")
async def list_datasets(runtime: Runtime, principal: Principal) -> list[Dataset]:
    return offered(await runtime.catalog.list_datasets(), principal)


def offered(datasets: Sequence[Dataset], principal: Principal) -> list[Dataset]:
    """The datasets a key is shown: revoked ones only to admins and their owner (with
    `revoked_at`), since nothing of them can be bought (also the MCP `list_datasets` tool)."""
    return [
        d
        for d in datasets
        if d.revoked_at is None or principal.role == "admin" or principal.owner_id == d.owner_id
    ]


@get(
    "/v1/datasets/{dataset_id:str}/revocations",
    summary="A dataset's signed deletion receipts (its owner or an admin)",
    description="Empty for a dataset that was never revoked. Each receipt is a JWS signed with "
    "the key at `/v1/keys/receipts`; `claims` is its verified payload.",
)
async def list_revocations(
    dataset_id: str, runtime: Runtime, principal: Principal
) -> list[RevocationReceipt]:
    dataset = await runtime.catalog.get_dataset(dataset_id)
    require_owner_access(principal, dataset.owner_id)
    jwks = runtime.receipts.jwks()
    stored = await RevocationStore(runtime.engine).receipts(dataset_id)
    return [revocation_receipt(jws, jwks) for jws in stored]


@get("/v1/chunks/{chunk_id:str}", summary="One chunk's citation, price, and text if purchased")
async def get_chunk(chunk_id: str, runtime: Runtime, principal: Principal) -> ChunkView:
    return await chunk_view(runtime, principal, chunk_id)


async def chunk_view(runtime: Runtime, principal: Principal, chunk_id: str) -> ChunkView:
    """What `principal` may see of a chunk (also served by the MCP `get_passage` tool)."""
    passage = await runtime.catalog.get_chunk(chunk_id)
    snapshot = await runtime.snapshot()
    dataset = snapshot.datasets[passage.dataset_id]
    owner = snapshot.owners[dataset.owner_id]
    licence = dataset.licence
    text, start, end = cap_snippet(passage, licence.snippet_cap_chars)
    purchased = await runtime.hits.has_hit(customer_id=principal.customer_id, chunk_id=chunk_id)
    readable = purchased or principal.role == "admin" or principal.owner_id == owner.id
    return ChunkView(
        chunk_id=chunk_id,
        price_micros=licence.price_per_hit_micros,
        currency=licence.currency,
        purchased=purchased,
        text=text if readable else None,
        citation=cite(passage, dataset, owner, start, end),
    )
