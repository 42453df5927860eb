"""Owner-facing routes: statements, and where the owner's content is stored."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from litestar import Response, get
from litestar.params import Parameter

from contracts import ResidencyReport, Statement
from ledger.keys import Principal
from ledger.statement_formats import statement_csv, statement_html, statement_pdf
from ledger.statements import build_statement
from service.auth import require_owner_access
from service.residency import merge_regions, partition_residency
from service.runtime import Runtime


@get(
    "/v1/owners/{owner_id:str}/statement",
    summary="An owner's hits, earnings and payout for an accounting month",
)
async def owner_statement(
    owner_id: str,
    runtime: Runtime,
    principal: Principal,
    period: Annotated[str, Parameter(description="Calendar month in UTC, YYYY-MM")],
    format: Annotated[Literal["json", "csv", "html", "pdf"], Parameter(query="format")] = "json",
) -> Response[Statement]:
    require_owner_access(principal, owner_id)
    statement = await build_statement(runtime.engine, owner_id=owner_id, period=period)
    if format == "csv":
        return Response(content=statement_csv(statement), media_type="text/csv")  # type: ignore[arg-type]
    if format == "html":
        page = await asyncio.to_thread(statement_html, statement)  # the chart: ~0.1 s of CPU
        return Response(content=page, media_type="text/html")  # type: ignore[arg-type]
    if format == "pdf":
        pdf = await asyncio.to_thread(statement_pdf, statement)  # chart + reportlab: ~0.2 s
        return Response(content=pdf, media_type="application/pdf")  # type: ignore[arg-type]
    return Response(content=statement)


@get(
    "/v1/owners/{owner_id:str}/residency",
    summary="Where the owner's datasets are stored in this deployment's region",
)
async def owner_residency(owner_id: str, runtime: Runtime, principal: Principal) -> ResidencyReport:
    """This server's region only: a server never opens another region's partition
    (`fairshare residency report` covers every region)."""
    require_owner_access(principal, owner_id)
    await runtime.catalog.get_owner(owner_id)  # 404 for an unknown owner, as statements give
    settings = runtime.settings
    qdrant = runtime.qdrant.client if runtime.qdrant is not None else None
    entries = await partition_residency(settings, runtime.catalog, qdrant, owner_id=owner_id)
    return merge_regions([entries], [settings.region])
