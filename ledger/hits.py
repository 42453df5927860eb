"""The hit ledger: one row per delivered passage, written with its query in one transaction.

Idempotency: a customer's Idempotency-Key maps to exactly one recorded query. A retry with the same
request gets the original response bytes back, never a second charge; the same key with another
request body is a conflict. The unique constraint on (customer_id, idempotency_key), not a
read-then-write check, is what makes concurrent retries safe.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import ConflictError, Hit, InvalidInput
from contracts.money import check_currency
from ledger.schema import hits as hit_rows
from ledger.schema import queries, utcnow

_HIT_FIELDS = tuple(Hit.__struct_fields__)


class HitLedger:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def replay(
        self, *, customer_id: str, idempotency_key: str, request_hash: str
    ) -> bytes | None:
        """The stored response for this key, None if the key is unused, ConflictError if it was
        used with a different request."""
        query = select(queries.c.request_hash, queries.c.response).where(
            queries.c.customer_id == customer_id, queries.c.idempotency_key == idempotency_key
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        if row.request_hash != request_hash:
            raise ConflictError(
                f"Idempotency-Key {idempotency_key!r} was already used with a different "
                "request body",
                idempotency_key=idempotency_key,
            )
        return bytes(row.response)

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

        If a concurrent request with the same idempotency key was recorded first, nothing is
        written and the winner's response is returned (or ConflictError if its body differed).
        """
        _check_money(query_id, customer_id, cost_micros, currency, hits)
        query_row = {
            "query_id": query_id,
            "customer_id": customer_id,
            "idempotency_key": idempotency_key,
            "request_hash": request_hash,
            "response": response,
            "cost_micros": cost_micros,
            "currency": currency,
            "created_at": utcnow(),
        }
        try:
            # Plain BEGIN is enough: the first statement writes, so SQLite takes its write lock
            # there and a second writer queues on the busy timeout instead of failing.
            async with self._engine.begin() as conn:
                await conn.execute(insert(queries), query_row)
                if hits:
                    rows = [{f: getattr(h, f) for f in _HIT_FIELDS} for h in hits]
                    await conn.execute(insert(hit_rows), rows)
        except IntegrityError as exc:
            if idempotency_key is not None:
                winner = await self.replay(
                    customer_id=customer_id,
                    idempotency_key=idempotency_key,
                    request_hash=request_hash,
                )
                if winner is not None:
                    return winner
            raise ConflictError(
                f"query {query_id} was already recorded", query_id=query_id
            ) from exc
        return response

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


def _check_money(
    query_id: str, customer_id: str, cost_micros: int, currency: str, batch: Sequence[Hit]
) -> None:
    """Refuse a batch that would write wrong money. Callers should never trip this; if one does,
    losing a response is better than a ledger that does not add up."""
    check_currency(currency)
    if cost_micros < 0:
        raise InvalidInput(f"query {query_id}: negative cost {cost_micros}")
    ranks = [h.rank for h in batch]
    if len(set(ranks)) != len(ranks):
        raise InvalidInput(f"query {query_id}: duplicate hit ranks {sorted(ranks)}")
    for h in batch:
        where = f"query {query_id}, rank {h.rank}"
        if (h.query_id, h.customer_id) != (query_id, customer_id):
            raise InvalidInput(f"{where}: hit belongs to query {h.query_id} of {h.customer_id}")
        if h.currency != currency:
            raise InvalidInput(f"{where}: hit in {h.currency}, query in {currency}")
        if min(h.price_micros, h.owner_micros, h.platform_micros) < 0:
            raise InvalidInput(f"{where}: negative amount")
        if h.owner_micros + h.platform_micros != h.price_micros:
            raise InvalidInput(
                f"{where}: owner {h.owner_micros} + platform {h.platform_micros} "
                f"!= price {h.price_micros}"
            )
        if h.created_at.tzinfo is None:
            raise InvalidInput(f"{where}: created_at must be timezone-aware")
    total = sum(h.price_micros for h in batch)
    if total != cost_micros:
        raise InvalidInput(f"query {query_id}: hits sum to {total}, cost says {cost_micros}")
