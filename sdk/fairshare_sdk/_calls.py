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
import msgspec.inspect

from contracts import Dataset, Payout, SearchResponse, Statement
from contracts.catalog import Use
from contracts.views import ChunkView, CustomerBalance, Receipt

T = TypeVar("T")


class _Lenient(Generic[T]):
    """Decodes a server's answer into `T`, ignoring fields this SDK does not know.

    Some contract types are request bodies too and refuse unknown fields (`Licence`, `Dataset`,
    `Owner`), which is right for what a server accepts and wrong for what a client reads: an
    SDK older than the server must keep working when the server adds a field. Such fields are
    dropped before the answer is converted, at every depth; what is known is still checked.
    """

    def __init__(self, kind: Any) -> None:
        self._kind = kind
        self._info = msgspec.inspect.type_info(kind)

    def decode(self, raw: bytes) -> T:
        value = _known(msgspec.json.decode(raw), self._info)
        converted: T = msgspec.convert(value, self._kind)
        return converted


def _known(value: Any, info: msgspec.inspect.Type) -> Any:
    if isinstance(info, msgspec.inspect.StructType) and isinstance(value, dict):
        fields = {f.encode_name: f.type for f in info.fields}
        return {k: _known(v, fields[k]) for k, v in value.items() if k in fields}
    if isinstance(info, msgspec.inspect.ListType | msgspec.inspect.VarTupleType) and isinstance(
        value, list
    ):
        return [_known(v, info.item_type) for v in value]
    if isinstance(info, msgspec.inspect.DictType) and isinstance(value, dict):
        return {k: _known(v, info.value_type) for k, v in value.items()}
    if isinstance(info, msgspec.inspect.UnionType):
        structs = [t for t in info.types if isinstance(t, msgspec.inspect.StructType)]
        if len(structs) == 1:  # X | None: the only unions of structs the contracts use
            return _known(value, structs[0])
    return value


_search = _Lenient[SearchResponse](SearchResponse)
_datasets = _Lenient[list[Dataset]](list[Dataset])
_chunk = _Lenient[ChunkView](ChunkView)
_receipt = _Lenient[Receipt](Receipt)
_jwks = msgspec.json.Decoder(dict[str, Any])
_balance = _Lenient[CustomerBalance](CustomerBalance)
_statement = _Lenient[Statement](Statement)
_payouts = _Lenient[list[Payout]](list[Payout])


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
    languages: Sequence[str] | None


def search(
    query: str,
    *,
    top_k: int = 10,
    datasets: Sequence[str] | None = None,
    max_cost_micros: int | None = None,
    rerank: bool | None = None,
    intended_use: Use | None = None,
    idempotency_key: str | None = None,
    languages: Sequence[str] | None = None,
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
        "languages": None if languages is None else list(languages),
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
