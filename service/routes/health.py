"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.openapi import ResponseSpec
from sqlalchemy import text

from service.runtime import Runtime


@get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/readyz",
    summary="Readiness: database, embedder, indexes and reranker",
    responses={503: ResponseSpec(dict[str, Any], description="Not ready: see `checks`")},
)
async def readyz(runtime: Runtime) -> Response[dict[str, Any]]:
    checks: dict[str, Any] = {}
    ready = True
    try:
        async with runtime.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = {"ok": True}
    except Exception as exc:  # readiness reports failures, it never raises them
        ready = False
        checks["database"] = {"ok": False, "detail": str(exc)[:300]}
    checks["embedder"] = {"ok": True, "model": runtime.embedder.model_name}
    checks["vector_backend"] = {"ok": True, "backend": runtime.settings.vector_backend}
    # No reranker is not "unready": the stage is skipped and every response says so.
    checks["reranker"] = {
        "ok": True,
        "loaded": runtime.reranker.loaded,
        "detail": runtime.reranker.detail,
    }
    # Which region's partition this server serves: what a load balancer routing by
    # jurisdiction, or an auditor, checks first.
    body = {
        "status": "ready" if ready else "unready",
        "region": runtime.settings.region,
        "checks": checks,
    }
    return Response(content=body, status_code=200 if ready else 503)
