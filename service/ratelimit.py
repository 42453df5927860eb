"""Per-key request rates: GCRA, kept in this process or shared by every replica through Redis.

GCRA (the generic cell rate algorithm, ITU-T I.371) keeps one number per API key: its
*theoretical arrival time* (TAT), when the key's budget will be whole again if it sends nothing
more. Each request pushes the TAT one emission interval (60 s / rate) later; a request that would
push it more than `burst` intervals past now is refused, and the caller learns exactly how long
to wait. A key whose TAT has passed is indistinguishable from one never seen, so its state can be
dropped: memory is bounded by the keys active in the last burst window (`burst` intervals, 6 s at
the default 600/min with bursts of 60).

    RateLimiter (protocol)       check(key) -> Decision; aclose()
    ├── InProcessRateLimiter     a dict in this process; each replica has a budget of its own
    └── RedisRateLimiter         one Redis key per API key, updated by one atomic Lua script that
                                 reads the Redis server's clock, so N replicas share one budget

Both run the same arithmetic in integer microseconds (`gcra`; the Lua script mirrors it line for
line), and one conformance suite (tests/service/test_rate_limits.py) runs against both.

Redis failing is not the customer's fault: a request whose check cannot reach Redis is let
through (fail open), counted in `fairshare_rate_limiter_errors_total` and logged once per outage;
for `REDIS_RETRY_AFTER_SECONDS` after an error Redis is not asked at all, so an outage costs at
most one timeout per that interval rather than one per request.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from contracts import RateLimited
from service.observability import RATE_LIMITED, RATE_LIMITER_ERRORS
from service.settings import Settings

log = logging.getLogger("fairshare")

MICROS = 1_000_000
# A Redis round trip is well under a millisecond; past this the check gives up and lets the
# request through rather than add its wait to a paid search.
REDIS_TIMEOUT_SECONDS = 0.5
# After a failed check, skip Redis for this long (fail open without asking).
REDIS_RETRY_AFTER_SECONDS = 1.0
REDIS_KEY_PREFIX = "fairshare:ratelimit:"
# The in-process limiter drops idle keys when it has grown to this many entries (and then to
# twice what is left), so a sweep costs O(1) amortised per check.
SWEEP_AT_LEAST = 1024


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`per_minute` requests a minute sustained, up to `burst` at once; `per_minute=0`: none."""

    per_minute: int
    burst: int

    def __post_init__(self) -> None:
        if self.per_minute < 0 or self.burst < 1:
            raise ValueError("a rate limit needs per_minute >= 0 and burst >= 1")

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    @property
    def interval_us(self) -> int:
        """Microseconds one request costs (60 s / rate, rounded; at least 1)."""
        return max(1, round(60 * MICROS / self.per_minute))

    def describe(self) -> str:
        return f"{self.per_minute} requests per minute, in bursts of at most {self.burst}"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0  # seconds until the same request would be allowed; 0 if allowed


ALLOWED = Decision(True)


def gcra(tat_us: int | None, now_us: int, limit: RateLimit) -> tuple[int | None, int]:
    """One GCRA step: (the key's new TAT, or None if refused; microseconds to wait if refused)."""
    tat = now_us if tat_us is None or tat_us < now_us else tat_us
    new_tat = tat + limit.interval_us
    allow_at = new_tat - limit.interval_us * limit.burst
    if now_us < allow_at:
        return None, allow_at - now_us
    return new_tat, 0


class RateLimiter(Protocol):
    limit: RateLimit

    async def check(self, key: str) -> Decision:
        """Spend one request from `key`'s budget, or say how long until it could be spent."""
        ...

    async def aclose(self) -> None: ...


class InProcessRateLimiter:
    """Budgets in this process's memory; `clock` is monotonic nanoseconds (tests inject one)."""

    def __init__(self, limit: RateLimit, *, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.limit = limit
        self._clock = clock
        self._tats: dict[str, int] = {}
        self._sweep_at = SWEEP_AT_LEAST

    def __len__(self) -> int:
        """How many keys hold state (a key with its whole budget holds none once swept)."""
        return len(self._tats)

    async def check(self, key: str) -> Decision:
        if not self.limit.enabled:
            return ALLOWED
        now = self._clock() // 1000
        new_tat, wait_us = gcra(self._tats.get(key), now, self.limit)
        if new_tat is None:
            return Decision(False, wait_us / MICROS)
        self._tats[key] = new_tat
        if len(self._tats) >= self._sweep_at:
            self._tats = {k: tat for k, tat in self._tats.items() if tat > now}
            self._sweep_at = max(SWEEP_AT_LEAST, 2 * len(self._tats))
        return ALLOWED

    async def aclose(self) -> None:
        self._tats.clear()


# KEYS[1]: the API key's state; ARGV: interval_us, burst. Returns {allowed 0|1, wait_us}.
# The same steps as `gcra`, on the Redis server's clock (TIME), so replicas' clocks never
# matter. Numbers stay below 2^53 (microseconds since 1970 are ~1.8e15), exact in Lua's
# doubles; string.format('%d') writes them without an exponent. The key expires when its TAT
# passes, since an absent key means the same as a passed TAT.
_GCRA_LUA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
    tat = now
end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if now < allow_at then
    return {0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat),
           'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return {1, 0}
"""


class RedisRateLimiter:
    """Budgets in Redis, shared by every process that uses the same server and limit. `clock`
    (monotonic seconds) only times the pause after an error; decisions use the server's."""

    def __init__(
        self,
        client: Redis,
        limit: RateLimit,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self._client = client
        self._script = client.register_script(_GCRA_LUA)
        self._clock = clock
        self._skip_until = 0.0
        self._failing = False

    @classmethod
    def from_url(
        cls,
        url: str,
        limit: RateLimit,
        *,
        timeout: float = REDIS_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> RedisRateLimiter:
        """A client for `url` that fails fast: one quick retry (a pooled connection may have
        been closed by a Redis restart), then the error, which `check` turns into fail-open."""
        client = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
        return cls(client, limit, clock=clock)

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False

    async def check(self, key: str) -> Decision:
        if not self.limit.enabled:
            return ALLOWED
        if self._clock() < self._skip_until:
            RATE_LIMITER_ERRORS.inc()
            return ALLOWED
        try:
            allowed, wait_us = await self._script(
                keys=[REDIS_KEY_PREFIX + key], args=[self.limit.interval_us, self.limit.burst]
            )
        except (RedisError, OSError) as exc:
            RATE_LIMITER_ERRORS.inc()
            self._skip_until = self._clock() + REDIS_RETRY_AFTER_SECONDS
            if not self._failing:
                self._failing = True
                log.warning("rate limiter: Redis failed (%r); requests pass unchecked", exc)
            return ALLOWED
        if self._failing:
            self._failing = False
            log.warning("rate limiter: Redis answers again; limits apply")
        return ALLOWED if allowed else Decision(False, int(wait_us) / MICROS)

    async def aclose(self) -> None:
        await self._client.aclose()


async def open_rate_limiter(settings: Settings) -> RateLimiter:
    """Redis when FAIRSHARE_REDIS_URL is set and limits are on; else in process. An unreachable
    Redis at startup is logged, not fatal: requests pass unchecked until it answers."""
    limit = RateLimit(settings.rate_limit_per_minute, settings.rate_limit_burst)
    if not (settings.redis_url and limit.enabled):
        return InProcessRateLimiter(limit)
    limiter = RedisRateLimiter.from_url(settings.redis_url, limit)
    if not await limiter.ping():
        log.warning("rate limiter: Redis does not answer at startup; requests pass unchecked")
    return limiter


async def enforce_rate_limit(limiter: RateLimiter, key_id: str) -> None:
    """Spend one request of `key_id`'s budget, or raise `RateLimited` (429 with Retry-After)."""
    decision = await limiter.check(key_id)
    if decision.allowed:
        return
    RATE_LIMITED.inc()
    retry_after = max(1, math.ceil(decision.retry_after))
    raise RateLimited(
        f"too many requests for this API key: its limit is {limiter.limit.describe()}; "
        f"retry in {retry_after} s",
        retry_after=retry_after,
    )
