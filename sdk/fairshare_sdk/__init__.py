"""Python client for the Fairshare paid-retrieval API.

    from fairshare_sdk import Fairshare

    with Fairshare(api_key="fs_…", base_url="https://api.example") as fairshare:
        found = fairshare.search("antibiotics for pneumonia", top_k=3)
        for result in found.results:
            print(result.text, result.citation.attribution)

`AsyncFairshare` is the same for asyncio. Results are the `contracts` types the server sends;
failures raise the typed exceptions of `fairshare_sdk.errors`.
"""

from __future__ import annotations

from contracts import Citation, Dataset, Payout, SearchResponse, SearchResult, Statement
from contracts.views import ChunkView, CustomerBalance, Receipt
from fairshare_sdk._calls import SearchOptions
from fairshare_sdk._client import AsyncFairshare, Fairshare
from fairshare_sdk._retry import RetryPolicy
from fairshare_sdk._version import __version__
from fairshare_sdk.errors import (
    APIConnectionError,
    AuthenticationError,
    ConflictError,
    FairshareError,
    InvalidRequest,
    NotFoundError,
    PaymentRequired,
    PermissionDenied,
    RateLimited,
    ServerError,
    ServiceUnavailable,
)

__all__ = [
    "APIConnectionError",
    "AsyncFairshare",
    "AuthenticationError",
    "ChunkView",
    "Citation",
    "ConflictError",
    "CustomerBalance",
    "Dataset",
    "Fairshare",
    "FairshareError",
    "InvalidRequest",
    "NotFoundError",
    "PaymentRequired",
    "Payout",
    "PermissionDenied",
    "RateLimited",
    "Receipt",
    "RetryPolicy",
    "SearchOptions",
    "SearchResponse",
    "SearchResult",
    "ServerError",
    "ServiceUnavailable",
    "Statement",
    "__version__",
]
