"""Per-key rate limits: one conformance suite over the in-process and the Redis limiter, the
Redis limiter shared by replicas and failing open, and the 429 through the real app.

The Redis runs use a real `redis-server` (tests/redis_server.py). Refill is shown by waiting for
the wait the limiter asked for: a fake clock moves for the in-process limiter, real time passes
for Redis (whose clock is the server's). Limits are chosen so that no check depends on how fast
the machine is: "refused" needs only that a few calls take less than the emission interval.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import pytest_asyncio
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from contracts import InvalidInput
from service.app import create_app
from service.ratelimit import (
    REDIS_KEY_PREFIX,
    REDIS_RETRY_AFTER_SECONDS,
    InProcessRateLimiter,
    RateLimit,
    RateLimiter,
    RedisRateLimiter,
    open_rate_limiter,
)
from service.runtime import Runtime, open_runtime
from service.settings import load_settings
from tests.conftest import asgi_client, make_settings
from tests.redis_server import RedisUnavailable, free_port, redis_server

# Real time can run a little past the server's clock between two calls; a wait this much longer
# than asked for is sure to be enough on any clock.
REAL_WAIT_MARGIN_SECONDS = 0.02


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    try:
        with redis_server() as url:
            yield url
    except RedisUnavailable as exc:
        pytest.fail(f"Redis unavailable: {exc}")


class FakeClock:
    """Monotonic nanoseconds for the in-process limiter, or seconds for the Redis failover."""

    def __init__(self) -> None:
        self.ns = 1_000_000_000_000

    def __call__(self) -> int:
        return self.ns

    def seconds(self) -> float:
        return self.ns / 1e9

    def advance(self, seconds: float) -> None:
        self.ns += round(seconds * 1e9)


@dataclass
class Backend:
    """Makes limiters that are replicas of one deployment, and lets time pass for them."""

    name: str
    make: Callable[[RateLimit], RateLimiter]
    advance: Callable[[float], Awaitable[None]]
    opened: list[RateLimiter] = field(default_factory=list)

    def replica(self, limit: RateLimit) -> RateLimiter:
        limiter = self.make(limit)
        self.opened.append(limiter)
        return limiter


@pytest_asyncio.fixture(params=["in-process", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "in-process":
        clock = FakeClock()

        async def tick(seconds: float) -> None:
            clock.advance(seconds)

        made = Backend("in-process", lambda limit: InProcessRateLimiter(limit, clock=clock), tick)
    else:
        url = request.getfixturevalue("redis_url")

        async def sleep(seconds: float) -> None:
            await asyncio.sleep(seconds + REAL_WAIT_MARGIN_SECONDS)

        # A generous timeout: a slow machine must not turn a check into a fail-open "allowed".
        made = Backend(
            "redis", lambda limit: RedisRateLimiter.from_url(url, limit, timeout=5), sleep
        )
    try:
        yield made
    finally:
        for limiter in made.opened:
            await limiter.aclose()


def new_key() -> str:
    return f"key-{uuid.uuid4().hex}"


async def allowed(limiter: RateLimiter, key: str, times: int) -> list[bool]:
    return [(await limiter.check(key)).allowed for _ in range(times)]


# --- conformance: the same behaviour from both limiters ---------------------------------------


async def test_a_burst_is_allowed_then_refused_with_the_wait(backend: Backend) -> None:
    limiter = backend.replica(RateLimit(per_minute=6, burst=3))  # one request per 10 s
    key = new_key()
    assert await allowed(limiter, key, 3) == [True, True, True]
    refused = await limiter.check(key)
    assert not refused.allowed
    assert 9 < refused.retry_after <= 10


async def test_each_key_has_a_budget_of_its_own(backend: Backend) -> None:
    limiter = backend.replica(RateLimit(per_minute=6, burst=2))
    first, second = new_key(), new_key()
    assert await allowed(limiter, first, 3) == [True, True, False]
    assert await allowed(limiter, second, 3) == [True, True, False]


async def test_the_budget_refills_at_the_rate(backend: Backend) -> None:
    limiter = backend.replica(RateLimit(per_minute=60, burst=2))  # one request per second
    key = new_key()
    assert await allowed(limiter, key, 2) == [True, True]
    refused = await limiter.check(key)
    assert not refused.allowed and 0 < refused.retry_after <= 1
    await backend.advance(refused.retry_after)
    # One interval has passed: one request, not a whole new burst.
    assert await allowed(limiter, key, 2) == [True, False]


async def test_a_refused_request_spends_nothing(backend: Backend) -> None:
    limiter = backend.replica(RateLimit(per_minute=6, burst=1))
    key = new_key()
    assert (await limiter.check(key)).allowed
    first = await limiter.check(key)
    again = [await limiter.check(key) for _ in range(5)]
    assert not first.allowed and not any(d.allowed for d in again)
    # Had the refusals been charged, the wait would have grown by an interval each time.
    assert all(d.retry_after <= first.retry_after for d in again)


async def test_a_zero_rate_limits_nothing(backend: Backend) -> None:
    limiter = backend.replica(RateLimit(per_minute=0, burst=1))
    assert all(await allowed(limiter, new_key(), 200))


async def test_replicas_share_a_budget_only_through_redis(backend: Backend) -> None:
    """Documented behaviour: in process, each replica enforces the limit on its own."""
    limit = RateLimit(per_minute=6, burst=3)
    one, two = backend.replica(limit), backend.replica(limit)
    key = new_key()
    answers = [(await replica.check(key)).allowed for replica in (one, two, one, two, one, two)]
    if backend.name == "redis":
        assert answers == [True, True, True, False, False, False]
    else:
        assert answers == [True] * 6
        assert not (await one.check(key)).allowed


# --- the in-process limiter's memory -----------------------------------------------------------


async def test_in_process_limiter_forgets_idle_keys() -> None:
    clock = FakeClock()
    limit = RateLimit(per_minute=600, burst=60)
    limiter = InProcessRateLimiter(limit, clock=clock)
    for n in range(2_000):
        await limiter.check(f"busy-{n}")
    assert len(limiter) == 2_000
    clock.advance(limit.burst * limit.interval_us / 1e6)  # every one of them is whole again
    for n in range(100):
        await limiter.check(f"new-{n}")
    assert len(limiter) <= 100
    # A forgotten key starts with its whole burst, as it would have anyway.
    assert await allowed(limiter, "busy-0", 61) == [True] * 60 + [False]


# --- Redis specifics ---------------------------------------------------------------------------


async def test_redis_state_expires_when_the_budget_is_whole_again(redis_url: str) -> None:
    limit = RateLimit(per_minute=6, burst=3)
    limiter = RedisRateLimiter.from_url(redis_url, limit, timeout=5)
    admin = Redis.from_url(redis_url)
    try:
        key = new_key()
        await allowed(limiter, key, 2)
        ttl_ms = await admin.pttl(REDIS_KEY_PREFIX + key)
        # Two requests at 10 s each: whole again 20 s from now, and not kept longer.
        assert 19_000 < ttl_ms <= 20_000
    finally:
        await limiter.aclose()
        await admin.aclose()


def errors_counted() -> float:
    return REGISTRY.get_sample_value("fairshare_rate_limiter_errors_total") or 0.0


async def test_redis_down_fails_open_then_limits_again_when_it_is_back() -> None:
    port = free_port()  # nothing listens here yet
    clock = FakeClock()
    limiter = RedisRateLimiter.from_url(
        f"redis://127.0.0.1:{port}/0", RateLimit(per_minute=6, burst=1), clock=clock.seconds
    )
    key = new_key()
    try:
        before = errors_counted()
        assert await allowed(limiter, key, 3) == [True, True, True]
        assert errors_counted() == before + 3
        with redis_server(port):
            # Within the pause after an error Redis is not asked; after it, limits apply.
            assert (await limiter.check(key)).allowed
            clock.advance(REDIS_RETRY_AFTER_SECONDS)
            assert await allowed(limiter, key, 2) == [True, False]
    finally:
        await limiter.aclose()


async def test_limiter_follows_the_settings(redis_url: str) -> None:
    in_process = await open_rate_limiter(load_settings({}))
    assert isinstance(in_process, InProcessRateLimiter)
    assert in_process.limit == RateLimit(per_minute=600, burst=60)
    shared = await open_rate_limiter(
        load_settings(
            {
                "FAIRSHARE_REDIS_URL": redis_url,
                "FAIRSHARE_RATE_LIMIT_PER_MINUTE": "30",
                "FAIRSHARE_RATE_LIMIT_BURST": "5",
            }
        )
    )
    off = await open_rate_limiter(
        load_settings({"FAIRSHARE_REDIS_URL": redis_url, "FAIRSHARE_RATE_LIMIT_PER_MINUTE": "0"})
    )
    try:
        assert isinstance(shared, RedisRateLimiter) and shared.limit == RateLimit(30, 5)
        assert isinstance(off, InProcessRateLimiter) and not off.limit.enabled
    finally:
        await shared.aclose()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FAIRSHARE_RATE_LIMIT_PER_MINUTE", "-1"),
        ("FAIRSHARE_RATE_LIMIT_PER_MINUTE", "ten"),
        ("FAIRSHARE_RATE_LIMIT_BURST", "0"),
        ("FAIRSHARE_REDIS_URL", "localhost:6379"),
    ],
)
def test_bad_rate_limit_settings_are_refused(variable: str, value: str) -> None:
    with pytest.raises(InvalidInput, match=variable):
        load_settings({variable: value})


async def client_count(admin: Redis) -> int:
    return len(await admin.client_list())


async def test_the_runtime_closes_its_redis_connection(redis_url: str, tmp_path: Path) -> None:
    admin = Redis.from_url(redis_url)
    try:
        alone = await client_count(admin)
        settings = make_settings(tmp_path, redis_url=redis_url)
        async with open_runtime(settings, with_reranker=False) as runtime:
            assert isinstance(runtime.limiter, RedisRateLimiter)
            assert (await runtime.limiter.check(new_key())).allowed
            assert await client_count(admin) == alone + 1
        for _ in range(100):  # the server notices the closed socket on its next event loop turn
            if await client_count(admin) == alone:
                break
            await asyncio.sleep(0.02)
        assert await client_count(admin) == alone
    finally:
        await admin.aclose()


# --- through the app -------------------------------------------------------------------------


@pytest_asyncio.fixture
async def limited(backend: Backend, demo_runtime: Runtime) -> Runtime:
    """The demo runtime with a tight limit: 3 requests at once, then one per 10 s."""
    return replace(demo_runtime, limiter=backend.replica(RateLimit(per_minute=6, burst=3)))


async def agent_key(runtime: Runtime) -> str:
    _, key = await runtime.keys.create_key(customer=f"rl-{uuid.uuid4().hex[:8]}", role="agent")
    return key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def refusals_counted() -> float:
    return REGISTRY.get_sample_value("fairshare_rate_limited_total") or 0.0


SEARCH = {"query": "antibiotics for community-acquired pneumonia", "top_k": 1}


async def test_over_the_limit_is_a_429_that_charges_nothing(limited: Runtime) -> None:
    key, other = await agent_key(limited), await agent_key(limited)
    async with asgi_client(create_app(runtime=limited)) as http:
        assert (await http.post("/v1/search", json=SEARCH, headers=bearer(key))).status_code == 200
        for _ in range(2):  # every authenticated route spends from the same budget
            assert (await http.get("/v1/balance", headers=bearer(key))).status_code == 200
        hits_before, refusals_before = await limited.hits.count_hits(), refusals_counted()

        refused = await http.post(
            "/v1/search", json=SEARCH, headers={**bearer(key), "Idempotency-Key": "rl-1"}
        )

        assert refused.status_code == 429
        assert refused.headers["content-type"].startswith("application/problem+json")
        problem = refused.json()
        assert problem["type"] == "https://fairshare.dev/problems/rate-limited"
        assert problem["status"] == 429 and problem["instance"] == "/v1/search"
        assert "6 requests per minute" in problem["detail"]
        retry_after = int(refused.headers["retry-after"])
        assert problem["retry_after"] == retry_after and 1 <= retry_after <= 10
        assert await limited.hits.count_hits() == hits_before
        assert refusals_counted() == refusals_before + 1
        # Other keys are not affected; routes without a key are not limited, header or not.
        assert (
            await http.post("/v1/search", json=SEARCH, headers=bearer(other))
        ).status_code == 200
        for path in ("/healthz", "/v1/keys/receipts", "/metrics"):
            assert (await http.get(path, headers=bearer(key))).status_code == 200
        assert (await http.get("/v1/datasets", headers=bearer(key))).status_code == 429


async def test_requests_without_a_valid_key_are_401s_and_spend_nothing(limited: Runtime) -> None:
    key = await agent_key(limited)
    near_misses = [{}, {"Authorization": f"Basic {key}"}, bearer(key + "x"), bearer("fs_nope")]
    async with asgi_client(create_app(runtime=limited)) as http:
        for headers in near_misses * 2:
            response = await http.get("/v1/datasets", headers=headers)
            assert response.status_code == 401, response.text
        statuses = [
            (await http.get("/v1/datasets", headers=bearer(key))).status_code for _ in range(4)
        ]
    assert statuses == [200, 200, 200, 429]
