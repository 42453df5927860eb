"""Typed exceptions for what the API answers with, and for answers that never came.

    FairshareError              any failure; carries the RFC 9457 problem the server sent
    ├── InvalidRequest          400, 413, 415, 422  malformed or out-of-range input
    ├── AuthenticationError     401  missing, malformed or unknown API key
    ├── PaymentRequired         402  budget or balance too small; nothing was charged
    ├── PermissionDenied        403  the key's role or dataset scope does not allow this
    ├── NotFoundError           404  an id that does not exist, or that this key may not see
    ├── ConflictError           409  an Idempotency-Key reused with another body
    ├── RateLimited             429  too many requests; `retry_after` says how long to wait
    ├── ServerError             5xx
    │   └── ServiceUnavailable  503  a model, index or database is not ready
    └── APIConnectionError      no answer: the connection failed or timed out (`status` is 0)

The client has already retried what was safe to retry (see `fairshare_sdk.RetryPolicy`) before
any of these reaches the caller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import msgspec

_PROBLEM_MEMBERS = ("type", "title", "status", "detail", "instance")
_problem = msgspec.json.Decoder(dict[str, Any])


class FairshareError(Exception):
    """A failed request. `type`, `title`, `status`, `detail` and `instance` are the problem
    document's members; `extensions` holds the others (a 402's `required_micros`, ...)."""

    def __init__(
        self,
        detail: str,
        *,
        status: int,
        type: str = "about:blank",
        title: str = "",
        instance: str | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}" if title else detail)
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.instance = instance
        self.extensions: dict[str, Any] = dict(extensions or {})

    def _int(self, member: str) -> int | None:
        value = self.extensions.get(member)
        return value if isinstance(value, int) and not isinstance(value, bool) else None


class InvalidRequest(FairshareError):
    pass


class AuthenticationError(FairshareError):
    pass


class PaymentRequired(FairshareError):
    """`required_micros`: what the search would cost (with a budget: its cheapest result).
    With a prepaid balance too small, also `balance_micros` and `available_micros`."""

    @property
    def required_micros(self) -> int | None:
        return self._int("required_micros")

    @property
    def balance_micros(self) -> int | None:
        return self._int("balance_micros")

    @property
    def available_micros(self) -> int | None:
        return self._int("available_micros")


class PermissionDenied(FairshareError):
    pass


class NotFoundError(FairshareError):
    pass


class ConflictError(FairshareError):
    pass


class RateLimited(FairshareError):
    """`retry_after`: seconds to wait, from the `Retry-After` header (or the problem's member)."""

    def __init__(self, detail: str, *, retry_after: float | None = None, **problem: Any) -> None:
        super().__init__(detail, **problem)
        self.retry_after = retry_after if retry_after is not None else self._int("retry_after")


class ServerError(FairshareError):
    pass


class ServiceUnavailable(ServerError):
    pass


class APIConnectionError(FairshareError):
    """No response: the connection failed, broke, or timed out on every attempt."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, status=0, title="Connection failed")


_BY_STATUS: dict[int, type[FairshareError]] = {
    400: InvalidRequest,
    401: AuthenticationError,
    402: PaymentRequired,
    403: PermissionDenied,
    404: NotFoundError,
    409: ConflictError,
    413: InvalidRequest,
    415: InvalidRequest,
    422: InvalidRequest,
    429: RateLimited,
    503: ServiceUnavailable,
}


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """`Retry-After` (RFC 9110 §10.2.3: delay-seconds or an HTTP-date) as seconds from `now`
    (a POSIX time); None when absent or unreadable."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value.strip()).timestamp() - now
        except (TypeError, ValueError, IndexError):
            return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def error_from_response(response: httpx.Response, now: float) -> FairshareError:
    """The typed exception for an error response, from its problem+json body when it has one
    (a proxy's HTML error page still gives a typed exception, by status)."""
    status = response.status_code
    try:
        body = _problem.decode(response.content)
    except msgspec.DecodeError:
        body = {}
    detail, instance = body.get("detail"), body.get("instance")
    if not isinstance(detail, str):
        detail = response.text[:500] or response.reason_phrase
    problem: dict[str, Any] = {
        "status": status,
        "type": str(body.get("type", "about:blank")),
        "title": str(body.get("title", response.reason_phrase)),
        "instance": instance if isinstance(instance, str) else None,
        "extensions": {k: v for k, v in body.items() if k not in _PROBLEM_MEMBERS},
    }
    kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else FairshareError)
    if kind is RateLimited:
        wait = retry_after_seconds(response.headers.get("Retry-After"), now)
        return RateLimited(detail, retry_after=wait, **problem)
    return kind(detail, **problem)
