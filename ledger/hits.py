"""Recording searches: each query, its hits and their postings, exactly once, in group commits.

Idempotency: a customer's Idempotency-Key maps to exactly one recorded query. A retry with the same
request gets the original response bytes back, never a second charge; the same key with another
request body is a conflict. Keys are checked under the ledger lock, so the check and the insert
cannot interleave with another process's; the unique constraint on (customer_id, idempotency_key)
backs that up.

Group commit: concurrent `record` calls in one process queue up, and one writer task books
everything queued in one transaction (one lock, one multi-row INSERT per table, one fsync) while
the next batch gathers. A lone request is written at once; under load, batches grow by themselves.
Nobody gets an answer before their rows are committed.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, select, tuple_
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import ConflictError, Hit, InvalidInput, PaymentRequired
from contracts.money import check_currency
from ledger import chain
from ledger.customers import balances_of, credit_limits
from ledger.db import in_ledger_transaction, read
from ledger.journal import NewEntry, append
from ledger.schema import hits as hit_rows
from ledger.schema import queries, utcnow

_HIT_FIELDS = tuple(Hit.__struct_fields__)
# How each database names a duplicate query id: PostgreSQL by constraint, SQLite by column.
_PK_QUERIES = re.compile(r"pk_queries|queries\.query_id")
MAX_BATCH_QUERIES = 256


@dataclass(frozen=True, slots=True)
class QueryRecord:
    query_id: str
    customer_id: str
    idempotency_key: str | None
    request_hash: str
    response: bytes
    cost_micros: int
    currency: str
    hits: Sequence[Hit]


@dataclass(slots=True)
class _Waiting:
    record: QueryRecord
    future: asyncio.Future[bytes]


class HitLedger:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_batch: int = MAX_BATCH_QUERIES,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._on_batch = on_batch or (lambda _size: None)  # batch sizes, for metrics
        self._queue: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches_written = 0  # observable group-commit behaviour, for tests and metrics

    async def replay(
        self, *, customer_id: str, idempotency_key: str, request_hash: str
    ) -> bytes | None:
        """The stored response for this key, None if the key is unused, ConflictError if it was
        used with a different request."""
        query = select(queries.c.request_hash, queries.c.response).where(
            queries.c.customer_id == customer_id, queries.c.idempotency_key == idempotency_key
        )
        row = await read(self._engine, lambda conn: conn.execute(query).first())
        if row is None:
            return None
        return _replayed(idempotency_key, request_hash, row.request_hash, bytes(row.response))

    async def record(
        self,
        *,
        query_id: str,
        customer_id: str,
        idempotency_key: str | None,
        request_hash: str,
        response: bytes,
        cost_micros: int,
        currency: str,
        hits: Sequence[Hit],
    ) -> bytes:
        """Record a query and its hits atomically; return the bytes the client must receive.

        If a request with the same idempotency key was recorded first (now or concurrently),
        nothing is written and the first response is returned (ConflictError if its body
        differed).
        """
        record = QueryRecord(
            query_id,
            customer_id,
            idempotency_key,
            request_hash,
            response,
            cost_micros,
            currency,
            tuple(hits),
        )
        _check_money(record)
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (CLI runs, tests): start afresh there
            self._loop, self._queue, self._writer = loop, [], None
        waiting = _Waiting(record, loop.create_future())
        self._queue.append(waiting)
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._drain())
        return await asyncio.shield(waiting.future)

    async def aclose(self) -> None:
        """Wait for queued records to be committed (at shutdown)."""
        if self._writer is not None and not self._writer.done():
            await self._writer

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            try:
                outcomes = await self._write([w.record for w in batch])
            except Exception as exc:
                # Something in the batch broke the transaction; write one by one so only the
                # culprit fails.
                outcomes = (
                    [_as_error(batch[0].record, exc)]
                    if len(batch) == 1
                    else [await self._write_alone(w.record) for w in batch]
                )
            for waiting, outcome in zip(batch, outcomes, strict=True):
                if waiting.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    waiting.future.set_exception(outcome)
                else:
                    waiting.future.set_result(outcome)

    async def _write_alone(self, record: QueryRecord) -> bytes | Exception:
        try:
            return (await self._write([record]))[0]
        except Exception as exc:
            return _as_error(record, exc)

    async def _write(self, batch: Sequence[QueryRecord]) -> list[bytes | Exception]:
        outcomes = await in_ledger_transaction(self._engine, lambda conn: _book(conn, batch))
        self.batches_written += 1
        self._on_batch(len(batch))
        return outcomes

    async def stored_response(self, query_id: str) -> tuple[str, bytes, set[str]] | None:
        """(customer id, exact response bytes, owners with hits in it) of a recorded query."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(queries.c.customer_id, queries.c.response).where(
                        queries.c.query_id == query_id
                    )
                )
            ).first()
            if row is None:
                return None
            found = await conn.execute(
                select(hit_rows.c.owner_id).where(hit_rows.c.query_id == query_id).distinct()
            )
            return row.customer_id, bytes(row.response), set(found.scalars())

    async def hits_for_query(self, query_id: str) -> list[Hit]:
        query = (
            select(*(hit_rows.c[f] for f in _HIT_FIELDS))
            .where(hit_rows.c.query_id == query_id)
            .order_by(hit_rows.c.rank)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [Hit(**row._asdict()) for row in rows]

    async def has_hit(self, *, customer_id: str, chunk_id: str) -> bool:
        """Whether the customer was ever delivered (and charged for) this chunk."""
        query = (
            select(hit_rows.c.id)
            .where(hit_rows.c.customer_id == customer_id, hit_rows.c.chunk_id == chunk_id)
            .limit(1)
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def count_hits(self) -> int:
        async with self._engine.connect() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(hit_rows))).scalar_one()
            )


def _book(conn: Connection, batch: Sequence[QueryRecord]) -> list[bytes | Exception]:
    """Write the batch's new queries and book their hits; answer replays and conflicts.

    A sync unit of work: one thread trip on SQLite, `run_sync` on PostgreSQL (`ledger.db`)."""
    keyed = [(r.customer_id, r.idempotency_key) for r in batch if r.idempotency_key is not None]
    stored: dict[tuple[str, str], tuple[str, bytes]] = {}
    if keyed:
        rows = conn.execute(
            select(
                queries.c.customer_id,
                queries.c.idempotency_key,
                queries.c.request_hash,
                queries.c.response,
            ).where(tuple_(queries.c.customer_id, queries.c.idempotency_key).in_(keyed))
        )
        stored = {
            (r.customer_id, r.idempotency_key): (r.request_hash, bytes(r.response)) for r in rows
        }
    outcomes: list[bytes | Exception] = []
    fresh: list[QueryRecord] = []
    for r in batch:
        key = (r.customer_id, r.idempotency_key or "")
        if r.idempotency_key is not None and key in stored:
            first_hash, first_response = stored[key]
            try:
                outcomes.append(
                    _replayed(r.idempotency_key, r.request_hash, first_hash, first_response)
                )
            except ConflictError as exc:
                outcomes.append(exc)
            continue
        if r.idempotency_key is not None:
            stored[key] = (r.request_hash, r.response)  # a twin later in this batch replays it
        fresh.append(r)
        outcomes.append(r.response)
    fresh = _affordable(conn, fresh, outcomes, batch)
    if not fresh:
        return outcomes
    now = utcnow()
    conn.execute(
        insert(queries),
        [
            {
                "query_id": r.query_id,
                "customer_id": r.customer_id,
                "idempotency_key": r.idempotency_key,
                "request_hash": r.request_hash,
                "response": r.response,
                "cost_micros": r.cost_micros,
                "currency": r.currency,
                "created_at": now,
            }
            for r in fresh
        ],
    )
    append(conn, [_hit_entry(h) for r in fresh for h in r.hits])
    return outcomes


def _affordable(
    conn: Connection,
    fresh: list[QueryRecord],
    outcomes: list[bytes | Exception],
    batch: Sequence[QueryRecord],
) -> list[QueryRecord]:
    """Drop (answering 402) the records whose customer cannot pay for them.

    Under the ledger lock, and in batch order: each record spends from what the ones before it
    left, so no two searches can both spend the same balance.
    """
    charged = {r.customer_id for r in fresh if r.cost_micros > 0}
    if not charged:
        return fresh
    limits = {c: lim for c, lim in credit_limits(conn, charged).items() if lim is not None}
    if not limits:
        return fresh
    available = {c: balance + limits[c] for c, balance in balances_of(conn, limits).items()}
    position = {id(r): n for n, r in enumerate(batch)}
    kept = []
    for r in fresh:
        left = available.get(r.customer_id)
        if left is not None and r.cost_micros > 0:
            if r.cost_micros > left:
                outcomes[position[id(r)]] = PaymentRequired(
                    f"this search costs {r.cost_micros} micros and your account has "
                    f"{max(left, 0)} available; top up or lower max_cost_micros",
                    required_micros=r.cost_micros,
                    balance_micros=left - limits[r.customer_id],
                    available_micros=max(left, 0),
                )
                continue
            available[r.customer_id] = left - r.cost_micros
        kept.append(r)
    return kept


def _hit_entry(hit: Hit) -> NewEntry:
    return NewEntry(
        kind=chain.KIND_HIT,
        currency=hit.currency,
        created_at=hit.created_at,
        query_id=hit.query_id,
        hit=hit,
        postings=chain.hit_postings(
            customer_id=hit.customer_id,
            owner_id=hit.owner_id,
            currency=hit.currency,
            price=hit.price_micros,
            owner=hit.owner_micros,
            platform=hit.platform_micros,
        ),
    )


def _as_error(record: QueryRecord, exc: Exception) -> Exception:
    if isinstance(exc, IntegrityError) and _PK_QUERIES.search(str(exc.orig)):
        # Keys were checked under the lock, so this is a reused query id, not a racing retry.
        return ConflictError(
            f"query {record.query_id} was already recorded", query_id=record.query_id
        )
    if isinstance(exc, DBAPIError) and "dataset revoked" in str(exc.orig):
        # The revoked-hits trigger (migration 0005): a revoke committed while this search ran.
        return ConflictError(
            "a dataset this search drew on was revoked while it ran; nothing was charged. "
            "Search again.",
            query_id=record.query_id,
        )
    return exc


def _replayed(key: str, request_hash: str, first_hash: str, first_response: bytes) -> bytes:
    if first_hash != request_hash:
        raise ConflictError(
            f"Idempotency-Key {key!r} was already used with a different request body",
            idempotency_key=key,
        )
    return first_response


def _check_money(r: QueryRecord) -> None:
    """Refuse a batch that would write wrong money. Callers should never trip this; if one does,
    losing a response is better than a ledger that does not add up."""
    check_currency(r.currency)
    if r.cost_micros < 0:
        raise InvalidInput(f"query {r.query_id}: negative cost {r.cost_micros}")
    ranks = [h.rank for h in r.hits]
    if len(set(ranks)) != len(ranks):
        raise InvalidInput(f"query {r.query_id}: duplicate hit ranks {sorted(ranks)}")
    for h in r.hits:
        where = f"query {r.query_id}, rank {h.rank}"
        if (h.query_id, h.customer_id) != (r.query_id, r.customer_id):
            raise InvalidInput(f"{where}: hit belongs to query {h.query_id} of {h.customer_id}")
        if h.currency != r.currency:
            raise InvalidInput(f"{where}: hit in {h.currency}, query in {r.currency}")
        if min(h.price_micros, h.owner_micros, h.platform_micros) < 0:
            raise InvalidInput(f"{where}: negative amount")
        if h.owner_micros + h.platform_micros != h.price_micros:
            raise InvalidInput(
                f"{where}: owner {h.owner_micros} + platform {h.platform_micros} "
                f"!= price {h.price_micros}"
            )
        if h.created_at.tzinfo is None:
            raise InvalidInput(f"{where}: created_at must be timezone-aware")
    total = sum(h.price_micros for h in r.hits)
    if total != r.cost_micros:
        raise InvalidInput(f"query {r.query_id}: hits sum to {total}, cost says {r.cost_micros}")
