"""The one place errors become RFC 9457 problem+json.

Domain errors (`contracts.errors`) carry their own status, type and title. Litestar's HTTP errors
(bad JSON, failed body validation, unknown route, wrong method) are translated so every error a
client sees has the same shape, and anything unexpected is a 500 that leaks no internals.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from contracts.errors import PROBLEM_BASE, FairshareError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("fairshare")

_HTTP_SLUGS = {
    400: ("invalid-input", "Invalid input"),
    401: ("unauthorized", "Missing or invalid API key"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    429: ("rate-limited", "Too many requests"),
}


def problem(
    status: int, type_: str, title: str, detail: str, instance: str, **extra: Any
) -> Response[bytes]:
    body = {"type": type_, "title": title, "status": status, "detail": detail, "instance": instance}
    body.update(extra)
    return Response(content=msgspec.json.encode(body), status_code=status, media_type=PROBLEM_JSON)


def _validation_detail(exc: ValidationException) -> str:
    """Turn Litestar's list of field errors into one readable sentence."""
    parts = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            key = item.get("key")
            message = str(item.get("message", "invalid"))
            parts.append(f"{key}: {message}" if key else message)
    return "; ".join(parts) or exc.detail or "request failed validation"


def handle_fairshare_error(request: Request[Any, Any, Any], exc: FairshareError) -> Response[bytes]:
    return problem(exc.status, exc.type, exc.title, exc.detail, request.url.path, **exc.extra)


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    if status >= 500:
        return handle_unexpected(request, exc)
    slug, title = _HTTP_SLUGS.get(status, ("http-error", "HTTP error"))
    detail = _validation_detail(exc) if isinstance(exc, ValidationException) else exc.detail
    response = problem(status, PROBLEM_BASE + slug, title, detail or title, request.url.path)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def handle_undecodable_body(
    request: Request[Any, Any, Any], exc: UnicodeDecodeError | RecursionError
) -> Response[bytes]:
    """Litestar's JSON decoding lets these two escape as plain exceptions: invalid UTF-8, and
    nesting deeper than the decoder's recursion limit. Both are the client's body, not our bug."""
    what = "is not valid UTF-8" if isinstance(exc, UnicodeDecodeError) else "is nested too deeply"
    return problem(
        400,
        PROBLEM_BASE + _HTTP_SLUGS[400][0],
        _HTTP_SLUGS[400][1],
        f"the request body {what}",
        request.url.path,
    )


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(
        500,
        PROBLEM_BASE + "internal",
        "Internal error",
        "an unexpected error occurred; it has been logged",
        request.url.path,
    )


EXCEPTION_HANDLERS: dict[int | type[Exception], Any] = {
    FairshareError: handle_fairshare_error,
    HTTPException: handle_http_exception,
    UnicodeDecodeError: handle_undecodable_body,
    RecursionError: handle_undecodable_body,
    Exception: handle_unexpected,
}
