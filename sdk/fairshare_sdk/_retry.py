"""When to try a request again, and how long to wait first: one policy for both clients.

The clients only send and sleep; `Attempts` decides. Every request the SDK sends is safe to
repeat: reads are, and a search carries one Idempotency-Key for all its attempts, so the server
replays the first answer instead of charging again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx

from fairshare_sdk._calls import Call
from fairshare_sdk.errors import APIConnectionError, error_from_response, retry_after_seconds

T = TypeVar("T")

# 429: the key's rate was exceeded; 503: the service is not ready. Neither did any work.
RETRY_STATUSES = frozenset({429, 503})
# Failures that say nothing was answered (the request may or may not have been processed).
# Not LocalProtocolError, UnsupportedProtocol or ProxyError: trying again cannot fix those.
RETRY_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)

Outcome = httpx.Response | httpx.TransportError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`max_attempts` in all (1: never retry). Without `Retry-After` the n-th retry waits a
    random time up to `min(max_backoff, backoff * 2**(n-1))` seconds ("full jitter"); a
    `Retry-After` is waited out as given, unless it is over `max_retry_after`, when the error
    is raised at once rather than sleeping that long."""

    max_attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0
    statuses: frozenset[int] = RETRY_STATUSES
    fraction: Callable[[], float] = random.random  # in [0, 1): the jitter
    clock: Callable[[], float] = time.time  # POSIX time, to read a Retry-After HTTP-date

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("max_attempts must be >= 1 and backoffs >= 0")

    def jittered(self, retry: int) -> float:
        return self.fraction() * min(self.max_backoff, self.backoff * 2.0 ** (retry - 1))


class Attempts(Generic[T]):
    """The attempts of one call: feed each outcome to `pause_after`, sleep what it says, send
    again; when it says None, `result()` decodes the answer or raises the typed error."""

    def __init__(self, call: Call[T], policy: RetryPolicy) -> None:
        self.call = call
        self.policy = policy
        self.made = 0
        self._last: Outcome | None = None

    def pause_after(self, outcome: Outcome) -> float | None:
        """Seconds to wait before the next attempt, or None when `outcome` is final."""
        self.made += 1
        self._last = outcome
        if self.made >= self.policy.max_attempts:
            return None
        if isinstance(outcome, httpx.TransportError):
            return self.policy.jittered(self.made) if isinstance(outcome, RETRY_ERRORS) else None
        if outcome.status_code not in self.policy.statuses:
            return None
        header = outcome.headers.get("Retry-After")
        wait = retry_after_seconds(header, self.policy.clock())
        if wait is None:
            return self.policy.jittered(self.made)
        return wait if wait <= self.policy.max_retry_after else None

    def result(self) -> T:
        outcome = self._last
        if outcome is None:
            raise RuntimeError("result() before any attempt")
        if isinstance(outcome, httpx.TransportError):
            raise APIConnectionError(
                f"{self.call.method} {self.call.path}: {type(outcome).__name__}: {outcome} "
                f"(after {self.made} attempt{'s' if self.made > 1 else ''})"
            ) from outcome
        if outcome.is_success:
            return self.call.decode(outcome.content)
        raise error_from_response(outcome, self.policy.clock())
