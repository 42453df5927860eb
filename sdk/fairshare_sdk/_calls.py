"""Each endpoint as a `Call`: what to send and how to decode the answer, with no I/O.

Both clients send the same `Call`s, so a request is described once. Answers are decoded into
the `contracts` types the server encodes them from.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypedDict, TypeVar
from urllib.parse import quote

import msgspec

from contracts import Dataset, Payout, SearchResponse, Statement
from contracts.catalog import Use
from contracts.views import ChunkView, CustomerBalance, Receipt

T = TypeVar("T")

_search = msgspec.json.Decoder(SearchResponse)
_datasets = msgspec.json.Decoder(list[Dataset])
_chunk = msgspec.json.Decoder(ChunkView)
_receipt = msgspec.json.Decoder(Receipt)
_jwks = msgspec.json.Decoder(dict[str, Any])
_balance = msgspec.json.Decoder(CustomerBalance)
_statement = msgspec.json.Decoder(Statement)
_payouts = msgspec.json.Decoder(list[Payout])


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One logical request. Every attempt of it sends exactly these bytes and headers."""

    method: str
    path: str
    decode: Callable[[bytes], T]
    params: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


class SearchOptions(TypedDict, total=False):
    """The keywords of `search()` besides the query (defaults in `search` below)."""

    top_k: int
    datasets: Sequence[str] | None
    max_cost_micros: int | None
    rerank: bool | None
    intended_use: Use | None
    idempotency_key: str | None


def search(
    query: str,
    *,
    top_k: int = 10,
    datasets: Sequence[str] | None = None,
    max_cost_micros: int | None = None,
    rerank: bool | None = None,
    intended_use: Use | None = None,
    idempotency_key: str | None = None,
) -> Call[SearchResponse]:
    """`POST /v1/search`. Options left as None are not sent, so the server's defaults apply
    (and a server older than an option still accepts requests that do not use it). Without an
    `idempotency_key`, one is made here, once, and sent with every attempt."""
    body: dict[str, Any] = {"query": query, "top_k": top_k}
    optional = {
        "datasets": None if datasets is None else list(datasets),
        "max_cost_micros": max_cost_micros,
        "rerank": rerank,
        "intended_use": intended_use,
    }
    body.update((name, value) for name, value in optional.items() if value is not None)
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": idempotency_key or str(uuid.uuid4()),
    }
    content = msgspec.json.encode(body)
    return Call("POST", "/v1/search", _search.decode, content=content, headers=headers)


def datasets() -> Call[list[Dataset]]:
    return Call("GET", "/v1/datasets", _datasets.decode)


def chunk(chunk_id: str) -> Call[ChunkView]:
    return Call("GET", f"/v1/chunks/{_segment(chunk_id)}", _chunk.decode)


def receipt(query_id: str) -> Call[Receipt]:
    return Call("GET", f"/v1/receipts/{_segment(query_id)}", _receipt.decode)


def receipt_keys() -> Call[dict[str, Any]]:
    return Call("GET", "/v1/keys/receipts", _jwks.decode)


def balance() -> Call[CustomerBalance]:
    return Call("GET", "/v1/balance", _balance.decode)


def statement(owner_id: str, period: str) -> Call[Statement]:
    path = f"/v1/owners/{_segment(owner_id)}/statement"
    return Call("GET", path, _statement.decode, params={"period": period, "format": "json"})


def payouts(owner_id: str, period: str | None = None) -> Call[list[Payout]]:
    params = {} if period is None else {"period": period}
    return Call("GET", f"/v1/owners/{_segment(owner_id)}/payouts", _payouts.decode, params=params)


def _segment(value: str) -> str:
    """An id as one path segment: a `/` or `?` in it must not change the route."""
    return quote(value, safe="")
