"""`Fairshare` and `AsyncFairshare`: the same endpoints, sent by httpx, retried by one policy.

All that differs between the two is how they send and sleep; what is sent comes from `_calls`
and when to try again from `_retry`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

import httpx

from contracts import Dataset, Payout, SearchResponse, Statement
from contracts.views import ChunkView, CustomerBalance, Receipt
from fairshare_sdk import _calls
from fairshare_sdk._calls import Call, SearchOptions
from fairshare_sdk._retry import Attempts, Outcome, RetryPolicy
from fairshare_sdk._version import __version__

T = TypeVar("T")

API_KEY_ENV = "FAIRSHARE_API_KEY"
BASE_URL_ENV = "FAIRSHARE_BASE_URL"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
# A search embeds, retrieves, may rerank and commits to the ledger before it answers.
DEFAULT_TIMEOUT_SECONDS = 60.0
USER_AGENT = f"fairshare-sdk/{__version__} httpx/{httpx.__version__}"


def _client_options(api_key: str | None, base_url: str | None, timeout: float) -> dict[str, Any]:
    key = api_key or os.environ.get(API_KEY_ENV)
    if not key:
        raise ValueError(f"pass api_key or set {API_KEY_ENV}")
    return {
        "base_url": base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL,
        "headers": {
            "Authorization": f"Bearer {key}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        },
        "timeout": timeout,
    }


def _request_args(call: Call[Any]) -> dict[str, Any]:
    return {
        "method": call.method,
        "url": call.path,
        "params": call.params,
        "content": call.content,
        "headers": call.headers,
    }


class Fairshare:
    """A Fairshare API client. `api_key` and `base_url` default to `$FAIRSHARE_API_KEY` and
    `$FAIRSHARE_BASE_URL` (else http://127.0.0.1:8000). Errors raise `fairshare_sdk.errors`
    types once `retry` gives up; `transport` and `sleep` are the I/O, injectable for tests.
    Use it as a context manager, or `close()` it."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        options = _client_options(api_key, base_url, timeout)
        self._http = httpx.Client(transport=transport, **options)
        self._retry = retry or RetryPolicy()
        self._sleep = sleep

    def search(self, query: str, **options: Unpack[SearchOptions]) -> SearchResponse:
        """Search licensed data; every result is a paid hit. Keywords: `top_k` (10),
        `datasets`, `max_cost_micros`, `rerank`, `intended_use`, `idempotency_key` (made
        once per call when not given, so retries never charge twice), `languages` (ISO 639-1
        codes, or "und": only passages in those languages)."""
        return self._call(_calls.search(query, **options))

    def datasets(self) -> list[Dataset]:
        """The catalog: datasets, their owners, licence terms and prices."""
        return self._call(_calls.datasets())

    def chunk(self, chunk_id: str) -> ChunkView:
        """A passage's citation and price; its `text` only if this customer already paid for it."""
        return self._call(_calls.chunk(chunk_id))

    def receipt(self, query_id: str) -> Receipt:
        """The signed receipt of a search, its claims decoded and verified by the server."""
        return self._call(_calls.receipt(query_id))

    def receipt_keys(self) -> dict[str, Any]:
        """The public keys that sign receipts, as a JWK set (to verify receipts offline)."""
        return self._call(_calls.receipt_keys())

    def balance(self) -> CustomerBalance:
        """This key's customer: prepaid balance, credit limit, what a search may still spend."""
        return self._call(_calls.balance())

    def statement(self, owner_id: str, period: str) -> Statement:
        """An owner's statement for a month (`period` is YYYY-MM); owner's or admin's key."""
        return self._call(_calls.statement(owner_id, period))

    def payouts(self, owner_id: str, period: str | None = None) -> list[Payout]:
        """An owner's payouts, of one month or all; owner's or admin's key."""
        return self._call(_calls.payouts(owner_id, period))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, call: Call[T]) -> T:
        attempts = Attempts(call, self._retry)
        while (pause := attempts.pause_after(self._send(call))) is not None:
            self._sleep(pause)
        return attempts.result()

    def _send(self, call: Call[Any]) -> Outcome:
        try:
            return self._http.request(**_request_args(call))
        except httpx.TransportError as exc:
            return exc


class AsyncFairshare:
    """`Fairshare` for asyncio: the same arguments and methods, awaited. `sleep` defaults to
    `asyncio.sleep`. Use it as an async context manager, or `await aclose()`."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        options = _client_options(api_key, base_url, timeout)
        self._http = httpx.AsyncClient(transport=transport, **options)
        self._retry = retry or RetryPolicy()
        self._sleep = sleep

    async def search(self, query: str, **options: Unpack[SearchOptions]) -> SearchResponse:
        return await self._call(_calls.search(query, **options))

    async def datasets(self) -> list[Dataset]:
        return await self._call(_calls.datasets())

    async def chunk(self, chunk_id: str) -> ChunkView:
        return await self._call(_calls.chunk(chunk_id))

    async def receipt(self, query_id: str) -> Receipt:
        return await self._call(_calls.receipt(query_id))

    async def receipt_keys(self) -> dict[str, Any]:
        return await self._call(_calls.receipt_keys())

    async def balance(self) -> CustomerBalance:
        return await self._call(_calls.balance())

    async def statement(self, owner_id: str, period: str) -> Statement:
        return await self._call(_calls.statement(owner_id, period))

    async def payouts(self, owner_id: str, period: str | None = None) -> list[Payout]:
        return await self._call(_calls.payouts(owner_id, period))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _call(self, call: Call[T]) -> T:
        attempts = Attempts(call, self._retry)
        while (pause := attempts.pause_after(await self._send(call))) is not None:
            await self._sleep(pause)
        return attempts.result()

    async def _send(self, call: Call[Any]) -> Outcome:
        try:
            return await self._http.request(**_request_args(call))
        except httpx.TransportError as exc:
            return exc
