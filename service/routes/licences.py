"""Licence routes: read a dataset's terms (JSON or RSL 1.0), and let its owner change them."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Response, get, put
from litestar.params import Parameter

from contracts import Dataset, Licence
from ledger.keys import Principal
from ledger.rsl import MEDIA_TYPE, ImportTerms, licence_from_rsl, licence_to_rsl
from service.auth import require_owner_access
from service.runtime import Runtime


@get(
    "/v1/datasets/{dataset_id:str}/licence",
    summary="A dataset's licence terms, as JSON or as an RSL 1.0 document",
    tags=["licences"],
)
async def get_licence(
    dataset_id: str,
    runtime: Runtime,
    principal: Principal,
    format: Annotated[Literal["json", "rsl"], Parameter(query="format")] = "json",
) -> Response[Licence]:
    dataset = await runtime.catalog.get_dataset(dataset_id)
    if format == "rsl":
        document = licence_to_rsl(dataset.licence, content_url=f"/v1/datasets/{dataset_id}")
        return Response(content=document, media_type=MEDIA_TYPE)  # type: ignore[arg-type]
    return Response(content=dataset.licence)


@put(
    "/v1/datasets/{dataset_id:str}/licence",
    summary="Serve a dataset under new terms from now on (its owner or an admin)",
    description="Licences are immutable: new terms need a new licence id; sending the current "
    "licence again changes nothing. Past hits keep the terms they were priced under.",
    tags=["licences"],
)
async def put_licence(
    dataset_id: str, data: Licence, runtime: Runtime, principal: Principal
) -> Dataset:
    current = await runtime.catalog.get_dataset(dataset_id)
    require_owner_access(principal, current.owner_id)
    return await runtime.catalog.set_licence(dataset_id, data)


@put(
    "/v1/datasets/{dataset_id:str}/licence/rsl",
    summary="Serve a dataset under the terms of an RSL 1.0 document (its owner or an admin)",
    description="The body is the RSL XML. Terms RSL has no element for are read from the "
    "document's Fairshare extension, or given as query parameters (which take precedence). "
    "Anything that does not map to a Fairshare licence is refused with a 400 saying why.",
    tags=["licences"],
)
async def put_licence_rsl(
    dataset_id: str,
    body: bytes,
    runtime: Runtime,
    principal: Principal,
    licence_id: Annotated[str | None, Parameter(query="licence_id")] = None,
    name: str | None = None,
    owner_share_bps: int | None = None,
    snippet_cap_chars: int | None = None,
    attribution: str | None = None,
) -> Dataset:
    current = await runtime.catalog.get_dataset(dataset_id)
    require_owner_access(principal, current.owner_id)
    licence = licence_from_rsl(
        body,
        currency=current.licence.currency,
        terms=ImportTerms(
            licence_id=licence_id,
            name=name,
            owner_share_bps=owner_share_bps,
            snippet_cap_chars=snippet_cap_chars,
            attribution=attribution,
        ),
    )
    return await runtime.catalog.set_licence(dataset_id, licence)
