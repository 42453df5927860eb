"""Shared, versioned shapes of Fairshare: frozen msgspec Structs, no I/O.

Schemas evolve by adding fields with defaults at the end (msgspec schema-evolution rules), so an
older client keeps decoding newer responses.
"""

from __future__ import annotations

from contracts.catalog import Chunk, ChunkText, Dataset, Document, Licence, Owner
from contracts.errors import (
    AuthError,
    ConflictError,
    FairshareError,
    ForbiddenError,
    InvalidInput,
    NotFound,
    PaymentRequired,
    RateLimited,
    Unavailable,
)
from contracts.ledger import (
    DatasetLine,
    DayLine,
    DocumentLine,
    Hit,
    LicenceTerms,
    Payout,
    ReceiptClaims,
    ReceiptLine,
    RegionLine,
    Statement,
)
from contracts.money import Money, split_price
from contracts.residency import DatasetResidency, ResidencyReport, StoreResidency
from contracts.revocation import (
    RegionRemoval,
    RevocationClaims,
    RevocationReceipt,
    StoreRemoval,
)
from contracts.search import (
    Citation,
    SearchRequest,
    SearchResponse,
    SearchResult,
    Timings,
    Withheld,
)

__all__ = [
    "AuthError",
    "Chunk",
    "ChunkText",
    "Citation",
    "ConflictError",
    "Dataset",
    "DatasetLine",
    "DatasetResidency",
    "DayLine",
    "Document",
    "DocumentLine",
    "FairshareError",
    "ForbiddenError",
    "Hit",
    "InvalidInput",
    "Licence",
    "LicenceTerms",
    "Money",
    "NotFound",
    "Owner",
    "PaymentRequired",
    "Payout",
    "RateLimited",
    "ReceiptClaims",
    "ReceiptLine",
    "RegionLine",
    "RegionRemoval",
    "ResidencyReport",
    "RevocationClaims",
    "RevocationReceipt",
    "SearchRequest",
    "SearchResponse",
    "SearchResult",
    "Statement",
    "StoreRemoval",
    "StoreResidency",
    "Timings",
    "Unavailable",
    "Withheld",
    "split_price",
]
