"""Appending transactions to the journal: chain, book, post, in one locked transaction.

Everything that moves money (hits, reversals, payouts) goes through `append`, inside
`ledger.db.ledger_transaction`. It numbers the entries after the current chain head, books each in
its period, checks each balances in one currency, creates accounts on first use, and inserts the
journal rows, the hits and the postings in bulk (one multi-row INSERT per table per batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select

from contracts import Hit, InvalidInput
from ledger import chain
from ledger.periods import booking_period
from ledger.schema import accounts, hits, journal, periods, postings


@dataclass(frozen=True, slots=True)
class NewEntry:
    kind: str
    currency: str
    created_at: datetime
    postings: Sequence[tuple[str, int]]
    query_id: str | None = None
    reverses_seq: int | None = None
    reason: str | None = None
    payout_id: str | None = None
    reference: str | None = None
    hit: Hit | None = None


@dataclass(frozen=True, slots=True)
class Booked:
    seq: int
    period: str
    hash: str
    entry: NewEntry = field(repr=False)


def _head_and_last_close(conn: Connection) -> tuple[int, str, str | None]:
    """(seq, hash) of the newest entry, or (0, GENESIS_HASH) for an empty journal, and the last
    closed period (None if none): one round trip, since every append needs all three."""
    newest = select(journal.c.seq, journal.c.hash).order_by(journal.c.seq.desc()).limit(1)
    row = conn.execute(
        select(
            newest.with_only_columns(journal.c.seq).scalar_subquery(),
            newest.with_only_columns(journal.c.hash).scalar_subquery(),
            select(func.max(periods.c.period)).scalar_subquery(),
        )
    ).one()
    seq, digest, last_closed = row
    if seq is None:
        return 0, chain.GENESIS_HASH, last_closed
    return int(seq), str(digest), last_closed


def hit_fields(hit: Hit) -> dict[str, Any]:
    return {name: getattr(hit, name) for name in chain.HIT_HASHED_FIELDS}


def append(conn: Connection, entries: Sequence[NewEntry]) -> list[Booked]:
    """Book `entries` in order after the chain head. The caller holds the ledger lock.

    A sync unit of work (`ledger.db`): async callers run it with `conn.run_sync(append, ...)`."""
    if not entries:
        return []
    for entry in entries:
        _check_balanced(entry)
    _ensure_accounts(conn, entries)
    seq, prev, last_closed = _head_and_last_close(conn)
    booked: list[Booked] = []
    journal_rows: list[dict[str, Any]] = []
    posting_rows: list[dict[str, Any]] = []
    hit_rows: list[dict[str, Any]] = []
    for entry in entries:
        seq += 1
        period = booking_period(entry.created_at, last_closed)
        fields = hit_fields(entry.hit) if entry.hit is not None else None
        digest = chain.entry_hash(
            prev,
            seq=seq,
            kind=entry.kind,
            currency=entry.currency,
            period=period,
            created_at=entry.created_at,
            query_id=entry.query_id,
            reverses_seq=entry.reverses_seq,
            reason=entry.reason,
            payout_id=entry.payout_id,
            postings=entry.postings,
            hit=fields,
            reference=entry.reference,
        )
        journal_rows.append(
            {
                "seq": seq,
                "kind": entry.kind,
                "currency": entry.currency,
                "period": period,
                "created_at": entry.created_at,
                "query_id": entry.query_id,
                "reverses_seq": entry.reverses_seq,
                "reason": entry.reason,
                "payout_id": entry.payout_id,
                "reference": entry.reference,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        posting_rows.extend(
            {"seq": seq, "account_id": account, "amount_micros": amount}
            for account, amount in entry.postings
        )
        if fields is not None:
            hit_rows.append({**fields, "seq": seq})
        booked.append(Booked(seq=seq, period=period, hash=digest, entry=entry))
        prev = digest
    conn.execute(insert(journal), journal_rows)
    conn.execute(insert(postings), posting_rows)
    if hit_rows:
        conn.execute(insert(hits), hit_rows)
    return booked


def _check_balanced(entry: NewEntry) -> None:
    if entry.kind not in chain.KINDS:
        raise InvalidInput(f"unknown transaction kind {entry.kind!r}")
    if sum(amount for _, amount in entry.postings) != 0:
        raise InvalidInput(f"{entry.kind} transaction does not balance: {list(entry.postings)}")
    accounts_used = [account for account, _ in entry.postings]
    if len(set(accounts_used)) != len(accounts_used):
        raise InvalidInput(f"{entry.kind} transaction posts to an account twice: {accounts_used}")
    if entry.hit is not None and entry.hit.currency != entry.currency:
        raise InvalidInput(
            f"hit in {entry.hit.currency} cannot be booked in a {entry.currency} transaction"
        )


def _ensure_accounts(conn: Connection, entries: Sequence[NewEntry]) -> None:
    """Create accounts on first use; refuse a posting in another currency than its account's.

    One account, one currency: that is what makes "mixing currencies in one transaction" an error
    the database state can check, not just a convention.
    """
    wanted: dict[str, tuple[str, datetime]] = {}
    for entry in entries:
        for account, _ in entry.postings:
            known = wanted.setdefault(account, (entry.currency, entry.created_at))
            if known[0] != entry.currency:
                raise InvalidInput(
                    f"account {account} would hold both {known[0]} and {entry.currency}"
                )
    rows = conn.execute(
        select(accounts.c.id, accounts.c.currency).where(accounts.c.id.in_(list(wanted)))
    )
    existing = {r.id: r.currency for r in rows}
    for account, currency in existing.items():
        if currency != wanted[account][0]:
            raise InvalidInput(
                f"account {account} is in {currency}; a {wanted[account][0]} transaction "
                "cannot post to it (mixing currencies)"
            )
    new = [
        {"id": a, "kind": chain.account_kind(a), "currency": c, "created_at": at}
        for a, (c, at) in wanted.items()
        if a not in existing
    ]
    if new:
        conn.execute(insert(accounts), new)
