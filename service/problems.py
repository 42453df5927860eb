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
from litestar.config.app import AppConfig
from litestar.constants import RESERVED_KWARGS
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Components, SecurityRequirement, SecurityScheme
from litestar.plugins import InitPluginProtocol, ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute

from contracts.errors import PROBLEM_BASE, FairshareError, RateLimited

PROBLEM_JSON = "application/problem+json"
API_KEY_SCHEME = "apiKey"
_API_KEY: SecurityRequirement = {API_KEY_SCHEME: []}
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
    response = problem(exc.status, exc.type, exc.title, exc.detail, request.url.path, **exc.extra)
    if isinstance(exc, RateLimited):
        # RFC 9110 §10.2.3: delay-seconds; the body's `retry_after` says the same.
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


# What Litestar raises (as a 500) when the client hangs up before its body has arrived.
_CLIENT_GONE = "client disconnected prematurely"


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    if status == 500 and exc.detail == _CLIENT_GONE:
        # Not our error, and nobody is left to read the answer: a 400 for the access log and
        # metrics, no stack trace in the error log. Nothing was searched or charged.
        log.info("client closed %s %s before sending its body", request.method, request.url.path)
        return problem(
            400,
            PROBLEM_BASE + _HTTP_SLUGS[400][0],
            _HTTP_SLUGS[400][1],
            "the client closed the connection before sending the whole body",
            request.url.path,
        )
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


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """An RFC 9457 problem document, as every error is sent. Some problems carry more members
    (a 402's `required_micros`, an unknown dataset's `datasets`)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str


_DESCRIPTIONS = {
    400: "Invalid input: a malformed body or parameter, named in `detail`",
    401: "Missing or invalid API key",
    402: "The search cannot be paid for (budget or balance); nothing was charged",
    403: "The key's role or dataset scope does not allow this",
    404: "An id that does not exist, or that this key may not see",
    409: "An idempotent write repeated with different content, or a state conflict",
    413: "Request body over 1 MiB",
    429: "This key's rate limit is spent; retry after `Retry-After` seconds",
}


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI responses declaring `statuses` as problem+json."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_JSON,
            description=_DESCRIPTIONS.get(status, "Problem"),
            generate_examples=False,
        )
        for status in statuses
    }


class ErrorAndAuthDocs(InitPluginProtocol, ReceiveRoutePlugin):
    """Declares, on every documented route, the problem+json errors it can answer with (in place
    of Litestar's default 400 schema, which is not what `EXCEPTION_HANDLERS` sends) and, where it
    takes an API key, the bearer scheme.

    Derived from the handler's signature: a key (`principal`) can be missing or lack the role
    (401, 403); parameters or a body can be invalid (400); a path id or an id in a body can be
    unknown (404); a write can conflict (409); a body can be too large (413). Statuses a route
    declares itself (`responses=`) are kept.
    """

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        if (config := app_config.openapi_config) is not None and isinstance(
            config.components, Components
        ):
            schemes = dict(config.components.security_schemes or {})
            schemes[API_KEY_SCHEME] = SecurityScheme(
                type="http", scheme="bearer", description="An API key: `Authorization: Bearer fs_…`"
            )
            config.components.security_schemes = schemes
        return app_config

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for handler in route.route_handlers:
            if not handler.include_in_schema:
                continue
            statuses = _statuses(handler, has_path_params=bool(route.path_parameters))
            # New values, not edits: handlers are per-app copies but share these attributes.
            # Idempotent: a handler comes again when another one joins its path.
            handler.responses = {**problem_responses(*statuses), **(handler.responses or {})}
            security = list(handler.security or [])
            if 401 in statuses and _API_KEY not in security:
                handler.security = [*security, _API_KEY]


def _statuses(handler: HTTPRouteHandler, *, has_path_params: bool) -> list[int]:
    arguments = set(handler.parsed_fn_signature.parameters)
    parameters = arguments - set(handler.resolve_dependencies()) - RESERVED_KWARGS
    has_body = handler.parsed_data_field is not None
    writes = bool(handler.http_methods - {"GET", "HEAD", "OPTIONS"})
    statuses = []
    if parameters or has_body:
        statuses.append(400)
    if "principal" in arguments:
        statuses += [401, 403, 429]
    if has_path_params or has_body:
        statuses.append(404)
    if writes:
        statuses.append(409)
    if has_body:
        statuses.append(413)
    return statuses
