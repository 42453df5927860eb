"""What the read routes beside search return: a chunk as one key may see it, a search's signed
receipt, and a customer's balance. Shared by `service/` (which sends them) and the SDK (which
decodes them)."""

from __future__ import annotations

import msgspec

from contracts.ledger import ReceiptClaims
from contracts.search import Citation
from contracts.types import Micros


class ChunkView(msgspec.Struct, frozen=True, kw_only=True):
    """A chunk's citation and price. `text` is present only when this customer has already
    paid for the passage (or the key is its owner's or an admin's): this route never gives
    away what `/v1/search` charges for."""

    chunk_id: str
    price_micros: int
    currency: str
    purchased: bool
    text: str | None
    citation: Citation


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """`jws` is what was signed; `claims` is its payload, decoded (and verified) for convenience."""

    query_id: str
    key_id: str
    jws: str
    claims: ReceiptClaims


class CustomerBalance(msgspec.Struct, frozen=True, kw_only=True):
    customer_id: str
    currency: str
    balance_micros: int  # top-ups less charges plus refunds; negative when on credit
    credit_limit_micros: Micros | None  # None: no limit
    available_micros: int | None  # what a search may still spend; None: no limit
