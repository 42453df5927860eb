"""Retries against a live server: answers lost after the server charged, 429 and 503 with and
without `Retry-After`. A small transport between the SDK and the server injects the faults; the
pauses are asserted as the SDK asks for them (an injected sleep), never timed."""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Literal

import httpx
import pytest

from fairshare_sdk import (
    APIConnectionError,
    AsyncFairshare,
    Fairshare,
    RateLimited,
    RetryPolicy,
    ServerError,
    ServiceUnavailable,
)
from fairshare_sdk.errors import retry_after_seconds
from tests.sdk.conftest import QUERY, Agent, Deployment

# Forward the request, let the server answer (and charge), then lose the answer.
DROP: Literal["drop"] = "drop"


class Canned:
    """An answer the transport gives itself, without reaching the server."""

    def __init__(self, status: int, retry_after: str | None = None) -> None:
        self.status = status
        self.headers = {} if retry_after is None else {"Retry-After": retry_after}

    def response(self) -> httpx.Response:
        body = {"type": "about:blank", "title": "injected", "status": self.status, "detail": "x"}
        return httpx.Response(self.status, headers=self.headers, json=body)


Fault = Canned | Literal["drop"]


class Faults:
    """The faults for the first requests, in order; later requests reach the server. Records
    what was sent and the pauses the client asked for between attempts."""

    def __init__(self, *faults: Fault) -> None:
        self._faults = list(faults)
        self.seen: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def take(self, request: httpx.Request) -> Fault | None:
        self.seen.append(request)
        return self._faults.pop(0) if self._faults else None

    def lost(self, request: httpx.Request) -> httpx.ReadError:
        return httpx.ReadError("connection reset after the server answered", request=request)

    def keys(self) -> set[str]:
        """The Idempotency-Keys sent."""
        return {request.headers["Idempotency-Key"] for request in self.seen}


class FaultyTransport(Faults, httpx.BaseTransport):
    def __init__(self, *faults: Fault) -> None:
        super().__init__(*faults)
        self._real = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        fault = self.take(request)
        if isinstance(fault, Canned):
            return fault.response()
        response = self._real.handle_request(request)
        if fault == DROP:
            response.read()
            response.close()
            raise self.lost(request)
        return response


class AsyncFaultyTransport(Faults, httpx.AsyncBaseTransport):
    def __init__(self, *faults: Fault) -> None:
        super().__init__(*faults)
        self._real = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        fault = self.take(request)
        if isinstance(fault, Canned):
            return fault.response()
        response = await self._real.handle_async_request(request)
        if fault == DROP:
            await response.aread()
            await response.aclose()
            raise self.lost(request)
        return response

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


class Unreachable(Faults, httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.take(request)
        raise httpx.ConnectError("connection refused", request=request)


# Jitter pinned to half of each backoff, so the pauses it asks for are known exactly.
HALF_JITTER = RetryPolicy(fraction=lambda: 0.5)


def client(
    deployment: Deployment,
    agent: Agent,
    transport: FaultyTransport | Unreachable,
    retry: RetryPolicy | None = None,
) -> Fairshare:
    return Fairshare(
        agent.key,
        deployment.base_url,
        transport=transport,
        retry=retry,
        sleep=transport.sleeps.append,
    )


def async_client(
    deployment: Deployment,
    agent: Agent,
    transport: AsyncFaultyTransport,
    retry: RetryPolicy | None = None,
) -> AsyncFairshare:
    return AsyncFairshare(
        agent.key, deployment.base_url, transport=transport, retry=retry, sleep=transport.sleep
    )


def test_answer_lost_after_the_charge_is_retried_with_the_same_key(
    deployment: Deployment, agent: Agent
) -> None:
    transport = FaultyTransport(DROP)
    with client(deployment, agent, transport, HALF_JITTER) as fairshare:
        found = fairshare.search(QUERY, top_k=3)
        assert len(transport.seen) == 2 and transport.sleeps == [0.25]
        (key,) = transport.keys()
        assert len(key) == 36  # one uuid4 for the logical call, sent with both attempts
        assert transport.seen[0].content == transport.seen[1].content
        # The server had charged the first attempt; the retry was a replay, not a second charge.
        assert fairshare.balance().balance_micros == -found.cost_micros
        assert fairshare.receipt(found.query_id).claims.cost_micros == found.cost_micros


async def test_async_answer_lost_after_the_charge_is_charged_once(
    deployment: Deployment, agent: Agent
) -> None:
    transport = AsyncFaultyTransport(DROP, DROP)
    async with async_client(deployment, agent, transport, HALF_JITTER) as fairshare:
        found = await fairshare.search(QUERY, top_k=2)
        assert len(transport.keys()) == 1 and len(transport.seen) == 3
        assert transport.sleeps == [0.25, 0.5]
        assert (await fairshare.balance()).balance_micros == -found.cost_micros


def test_rate_limited_search_waits_retry_after_then_succeeds(
    deployment: Deployment, agent: Agent
) -> None:
    now = float(int(time.time()))  # an HTTP-date has whole seconds
    transport = FaultyTransport(Canned(429, "2"), Canned(503, formatdate(now + 7, usegmt=True)))
    with client(deployment, agent, transport, RetryPolicy(clock=lambda: now)) as fairshare:
        found = fairshare.search(QUERY, top_k=1)
        # Delay-seconds and an HTTP-date (7 s after the pinned clock) are both honoured.
        assert transport.sleeps == [2.0, 7.0]
        assert len(transport.keys()) == 1 and len(transport.seen) == 3
        assert fairshare.balance().balance_micros == -found.cost_micros


def test_unavailable_without_retry_after_backs_off_exponentially_up_to_the_cap(
    deployment: Deployment, agent: Agent
) -> None:
    transport = FaultyTransport(Canned(503), Canned(503), Canned(503))
    policy = RetryPolicy(backoff=0.5, max_backoff=1.5, fraction=lambda: 0.5)
    with client(deployment, agent, transport, policy) as fairshare:
        assert fairshare.datasets()
    assert transport.sleeps == [0.25, 0.5, 0.75]  # half of 0.5, 1.0, then 2.0 capped at 1.5


def test_giving_up_raises_the_last_error_and_never_reaches_the_server(
    deployment: Deployment, agent: Agent
) -> None:
    transport = FaultyTransport(*[Canned(429, "3")] * 3)
    with client(deployment, agent, transport, RetryPolicy(max_attempts=3)) as fairshare:
        with pytest.raises(RateLimited) as limited:
            fairshare.search(QUERY)
        assert limited.value.status == 429 and limited.value.retry_after == 3.0
        assert transport.sleeps == [3.0, 3.0] and len(transport.seen) == 3
        assert fairshare.balance().balance_micros == 0


def test_a_retry_after_longer_than_the_policy_allows_is_raised_at_once(
    deployment: Deployment, agent: Agent
) -> None:
    transport = FaultyTransport(Canned(503, "120"))
    fairshare = client(deployment, agent, transport)
    with fairshare, pytest.raises(ServiceUnavailable) as unavailable:
        fairshare.balance()
    assert unavailable.value.status == 503
    assert transport.sleeps == [] and len(transport.seen) == 1


async def test_async_rate_limit_honours_retry_after(deployment: Deployment, agent: Agent) -> None:
    transport = AsyncFaultyTransport(Canned(429, "1"), Canned(429, "4"))
    async with async_client(deployment, agent, transport) as fairshare:
        found = await fairshare.search(QUERY, top_k=1)
        assert transport.sleeps == [1.0, 4.0] and len(transport.keys()) == 1
        assert (await fairshare.balance()).balance_micros == -found.cost_micros


def test_no_answer_at_all_is_a_connection_error_after_every_attempt(
    deployment: Deployment, agent: Agent
) -> None:
    transport = Unreachable()
    fairshare = client(deployment, agent, transport, HALF_JITTER)
    with fairshare, pytest.raises(APIConnectionError) as failed:
        fairshare.search(QUERY)
    assert len(transport.seen) == 4 and transport.sleeps == [0.25, 0.5, 1.0]
    assert failed.value.status == 0 and isinstance(failed.value.__cause__, httpx.ConnectError)


def test_errors_other_than_429_and_503_are_not_retried(
    deployment: Deployment, agent: Agent
) -> None:
    transport = FaultyTransport(Canned(500))
    fairshare = client(deployment, agent, transport)
    with fairshare, pytest.raises(ServerError) as failed:
        fairshare.search(QUERY)
    # A 500 is a fault in the server, not a passing state: trying again would only repeat it.
    assert failed.value.status == 500
    assert transport.sleeps == [] and len(transport.seen) == 1


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("5", 5.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("-3", 0.0),
        (formatdate(NOW + 30, usegmt=True), 30.0),
        (formatdate(NOW - 30, usegmt=True), 0.0),  # a date in the past: go now
        ("nan", None),
        ("inf", None),
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(
    header: str | None, seconds: float | None
) -> None:
    assert retry_after_seconds(header, NOW) == seconds
