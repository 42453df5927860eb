"""The payout gateway boundary: what `ledger.payouts` needs from Stripe, and nothing more.

Amounts cross this boundary in the currency's minor units (cents), as Stripe counts them; the
ledger converts from micros. Every transfer carries our payout id as its idempotency key, so
asking twice for the same payout moves money once.

Errors: `TransferRejected` is final for this attempt (the gateway refused: unknown or disabled
account, insufficient platform balance, invalid request); `GatewayUnavailable` means the outcome
is unknown (network error, timeout, 5xx, 429) and the same request must be retried with the same
idempotency key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Protocol

import msgspec


class Transfer(msgspec.Struct, frozen=True, kw_only=True):
    transfer_id: str
    payout_id: str | None  # from metadata["payout_id"]; None for transfers we did not make
    destination: str
    amount_minor: int
    currency: str  # upper-case ISO 4217, as the ledger writes it
    transfer_group: str | None
    created: datetime


class GatewayError(Exception):
    """Base of the gateway's errors; `str(exc)` is a message fit for an operator."""


class TransferRejected(GatewayError):
    """The gateway refused the transfer; retrying the same request cannot succeed."""


class GatewayUnavailable(GatewayError):
    """The outcome is unknown; retry the same request with the same idempotency key."""


class PayoutGateway(Protocol):
    def create_transfer(
        self,
        *,
        idempotency_key: str,
        destination: str,
        amount_minor: int,
        currency: str,
        transfer_group: str,
        metadata: Mapping[str, str],
    ) -> Transfer: ...

    def list_transfers(self, *, transfer_group: str | None = None) -> Iterator[Transfer]:
        """Every transfer (optionally of one group), newest first, across all pages."""
        ...

    def account_ready(self, account_id: str) -> bool:
        """Whether the connected account exists and can receive transfers."""
        ...

    def available_balance(self, currency: str) -> int:
        """The platform's available balance in `currency`, in minor units."""
        ...
