"""POST /v1/search."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, post
from litestar.params import Parameter

from contracts import SearchRequest, SearchResponse
from ledger.keys import Principal
from service.auth import require_role
from service.problems import problem_responses
from service.runtime import Runtime
from service.searching import check_idempotency_key, run_search


@post(
    "/v1/search",
    status_code=200,
    summary="Search licensed data; every result is a paid hit",
    responses=problem_responses(402),
)
async def search(
    request: Request[Any, Any, Any],
    data: SearchRequest,
    runtime: Runtime,
    principal: Principal,
    idempotency_key: Annotated[
        str | None,
        Parameter(
            header="Idempotency-Key",
            required=False,
            description="Retry safely: the same key and body return the original response "
            "and charge nothing more; the same key with another body is a 409.",
        ),
    ] = None,
) -> Response[SearchResponse]:
    require_role(principal, "agent", "admin")
    body = await run_search(runtime, principal, data, check_idempotency_key(idempotency_key))
    request.state.query_id = _query_id.decode(body).query_id  # for the access log line
    return Response(content=body, media_type="application/json")  # type: ignore[arg-type]


class _QueryId(msgspec.Struct):
    query_id: str


_query_id = msgspec.json.Decoder(_QueryId)
