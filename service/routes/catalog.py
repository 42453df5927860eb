"""Catalog reads: datasets with their terms, and single chunks."""

from __future__ import annotations

from litestar import get

from contracts import Dataset
from contracts.views import ChunkView
from ledger.keys import Principal
from service.runtime import Runtime
from service.searching import cap_snippet, cite


@get("/v1/datasets", summary="The catalog: datasets, owners, licence terms and prices")
async def list_datasets(runtime: Runtime, principal: Principal) -> list[Dataset]:
    return await runtime.catalog.list_datasets()


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
