"""The ledger's accounts and the hash chain over its transactions (pure, no I/O).

Sign convention: a posting's amount is signed micros, debits positive and credits negative, so
every transaction's postings sum to zero. A hit debits the customer the price and credits the
owner's payable and the platform's revenue with their shares; a payout debits the owner's payable
and credits the gateway (cash leaving the platform); a top-up debits the gateway (cash coming in)
and credits the customer, whose balance (credits less debits) is then what they may spend.

Every transaction (journal row) carries `prev_hash`, the hash of the one before it, and its own
`hash` over its content, its postings and, for a hit, the hit's row. Changing any of them, or
removing or reordering a transaction, breaks the chain at that point. The encoding below is part
of the stored data: `HASH_VERSION` names it, and changing it means a migration that re-chains.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

HASH_VERSION = 1
GENESIS_HASH = "0" * 64

KIND_HIT = "hit"
KIND_REVERSAL = "reversal"
KIND_PAYOUT = "payout"
KIND_TOPUP = "topup"
KINDS = (KIND_HIT, KIND_REVERSAL, KIND_PAYOUT, KIND_TOPUP)


def customer_account(customer_id: str) -> str:
    return f"customer:{customer_id}"


def owner_account(owner_id: str) -> str:
    """The owner's payable: what we owe them, credited by hits, debited by payouts."""
    return f"owner:{owner_id}"


def platform_account(currency: str) -> str:
    return f"platform:revenue:{currency}"


def gateway_account(currency: str) -> str:
    """Money sent out through the payout gateway (Stripe) in this currency."""
    return f"gateway:stripe:{currency}"


def account_kind(account_id: str) -> str:
    return account_id.split(":", 1)[0]


def hit_postings(
    *, customer_id: str, owner_id: str, currency: str, price: int, owner: int, platform: int
) -> list[tuple[str, int]]:
    return [
        (customer_account(customer_id), price),
        (owner_account(owner_id), -owner),
        (platform_account(currency), -platform),
    ]


def payout_postings(*, owner_id: str, currency: str, amount: int) -> list[tuple[str, int]]:
    return [(owner_account(owner_id), amount), (gateway_account(currency), -amount)]


def topup_postings(*, customer_id: str, currency: str, amount: int) -> list[tuple[str, int]]:
    """Prepaid money received (through the gateway) and owed to the customer as searches."""
    return [(gateway_account(currency), amount), (customer_account(customer_id), -amount)]


def reversed_postings(postings: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    return [(account, -amount) for account, amount in postings]


def entry_hash(
    prev_hash: str,
    *,
    seq: int,
    kind: str,
    currency: str,
    period: str,
    created_at: datetime,
    query_id: str | None,
    reverses_seq: int | None,
    reason: str | None,
    payout_id: str | None,
    postings: Sequence[tuple[str, int]],
    hit: Mapping[str, Any] | None,
    reference: str | None = None,
) -> str:
    """SHA-256 (hex) of one transaction, chained to `prev_hash`.

    Keys are sorted and postings ordered by account, so the hash depends on content only, never on
    the order rows come back from the database. Datetimes are encoded as UTC ISO-8601 with
    microseconds, which both SQLite and PostgreSQL store exactly.
    """
    record = {
        "v": HASH_VERSION,
        "seq": seq,
        "kind": kind,
        "currency": currency,
        "period": period,
        "created_at": created_at.isoformat(timespec="microseconds"),
        "query_id": query_id,
        "reverses_seq": reverses_seq,
        "reason": reason,
        "payout_id": payout_id,
        "reference": reference,
        "postings": sorted([account, int(amount)] for account, amount in postings),
        "hit": None
        if hit is None
        else {k: _plain(v) for k, v in hit.items() if v is not None or k not in LATER_HIT_FIELDS},
    }
    body = msgspec.json.encode(record, order="sorted")
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + body).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    return value


# The hit columns the chain covers: everything that says what was delivered and what it cost.
HIT_HASHED_FIELDS = (
    "query_id",
    "rank",
    "customer_id",
    "chunk_id",
    "document_id",
    "dataset_id",
    "owner_id",
    "licence_id",
    "price_micros",
    "owner_micros",
    "platform_micros",
    "currency",
    "created_at",
    "region",
    "territory",
)
# Hit columns added after hashes were first written: hashed only when set, so a hit recorded
# before they existed keeps its hash, while setting or clearing one later still breaks it.
LATER_HIT_FIELDS = frozenset({"region", "territory"})
