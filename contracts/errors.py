"""The Fairshare error tree. `service/` maps each class to RFC 9457 problem+json in one place.

    FairshareError                 500  never raised on purpose; the root
    ├── InvalidInput               400  malformed or out-of-range input
    ├── AuthError                  401  missing, malformed or unknown API key
    ├── ForbiddenError             403  key is valid but its role or scope does not allow this
    ├── NotFound                   404  an id that does not exist
    ├── ConflictError              409  key reused with another body; concurrent edits
    ├── RateLimited                429  an API key sent more requests than its rate allows
    ├── PaymentRequired            402  a search that cannot be paid for
    └── Unavailable                503  a dependency (model, index, database) is not ready

Each class carries a stable `type` URI and `title`; instances carry the `detail` a user reads and
optional `extra` members that are copied into the problem document.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_BASE = "https://fairshare.dev/problems/"


class FairshareError(Exception):
    """Root of every error Fairshare raises on purpose."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug


class InvalidInput(FairshareError):
    status = 400
    slug = "invalid-input"
    title = "Invalid input"


class AuthError(FairshareError):
    status = 401
    slug = "unauthorized"
    title = "Missing or invalid API key"


class PaymentRequired(FairshareError):
    status = 402
    slug = "payment-required"
    title = "Payment required"


class ForbiddenError(FairshareError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class NotFound(FairshareError):
    status = 404
    slug = "not-found"
    title = "Not found"


class ConflictError(FairshareError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class RateLimited(FairshareError):
    """Carries `retry_after` (whole seconds, at least 1); `service/` sends it as `Retry-After`."""

    status = 429
    slug = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, retry_after=retry_after, **extra)
        self.retry_after = retry_after


class Unavailable(FairshareError):
    status = 503
    slug = "unavailable"
    title = "Service unavailable"
