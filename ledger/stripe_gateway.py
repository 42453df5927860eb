"""`PayoutGateway` on Stripe Connect, through Stripe's own Python SDK.

Each call is one HTTP request (or one per page when listing): the SDK's own retries are off,
because `ledger.payouts` decides when to retry and always does so with the same idempotency key
(the payout id), so a retry can never move money twice.

Stripe's errors map onto the gateway's two:

- `TransferRejected`, Stripe refused and did nothing that a retry could change: an invalid request
  (unknown destination, insufficient platform balance, a destination without the `transfers`
  capability), a bad or restricted API key, and an idempotency key reused with other parameters,
  which is a bug on our side.
- `GatewayUnavailable`, the outcome is unknown: no connection, a timeout, a dropped connection,
  429, any 5xx or 409 (`APIError`), or an error class this module does not know.

Stripe saves the result of a request under its idempotency key, errors included: retrying a
rejected transfer with the same key replays the rejection, which is why a failed payout is
retried under a new payout id.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import stripe

from ledger.gateway import GatewayError, GatewayUnavailable, Transfer, TransferRejected

if TYPE_CHECKING:
    from stripe.params import TransferListParams

PAGE_SIZE = 100  # the largest `limit` Stripe's list endpoints accept
# Stripe answers a platform asking for an account it cannot see (absent, or not connected to it)
# with 403 account_invalid; 404 resource_missing is the generic "no such object".
_NO_SUCH_ACCOUNT = {"account_invalid", "resource_missing"}
_FINAL = (
    stripe.InvalidRequestError,
    stripe.CardError,
    stripe.AuthenticationError,
    stripe.PermissionError,
)


class StripeGateway:
    """Transfers to connected accounts from the platform balance of `api_key`'s account.

    `api_base` replaces https://api.stripe.com (a local fake in tests); `timeout_s` bounds each
    HTTP request, after which the outcome is unknown (`GatewayUnavailable`).
    """

    def __init__(
        self, api_key: str, *, api_base: str | None = None, timeout_s: float = 30.0
    ) -> None:
        self._client = stripe.StripeClient(
            api_key,
            # The SDK appends paths such as "/v1/transfers" to the base as it is.
            base_addresses={"api": api_base.rstrip("/")} if api_base else {},
            max_network_retries=0,
            # httpx rather than the SDK's default (requests): it is one of our pinned
            # dependencies, and its client is safe to share across the threads payouts use.
            http_client=stripe.HTTPXClient(timeout=timeout_s, allow_sync_methods=True),
        )

    def create_transfer(
        self,
        *,
        idempotency_key: str,
        destination: str,
        amount_minor: int,
        currency: str,
        transfer_group: str,
        metadata: Mapping[str, str],
    ) -> Transfer:
        try:
            created = self._client.v1.transfers.create(
                {
                    "amount": amount_minor,
                    "currency": currency.lower(),
                    "destination": destination,
                    "transfer_group": transfer_group,
                    "metadata": dict(metadata),
                },
                {"idempotency_key": idempotency_key},
            )
        except stripe.IdempotencyError as exc:
            raise TransferRejected(
                f"idempotency key {idempotency_key!r} was already used for a transfer with other "
                f"parameters; this is a bug in the caller, not a Stripe refusal ({_detail(exc)})"
            ) from exc
        except stripe.StripeError as exc:
            raise _gateway_error(exc) from exc
        return _to_transfer(created)

    def list_transfers(self, *, transfer_group: str | None = None) -> Iterator[Transfer]:
        params: TransferListParams = {"limit": PAGE_SIZE}
        if transfer_group is not None:
            params["transfer_group"] = transfer_group
        try:
            for transfer in self._client.v1.transfers.list(params).auto_paging_iter():
                yield _to_transfer(transfer)
        except stripe.StripeError as exc:
            raise _gateway_error(exc) from exc

    def account_ready(self, account_id: str) -> bool:
        """Whether the account exists and its `transfers` capability is active.

        That capability is what Stripe checks before a transfer to the account; `payouts_enabled`
        is about the account paying out to its bank, which is the owner's business.
        """
        if not account_id:  # GET /v1/accounts/ would describe our own platform account
            return False
        try:
            account = self._client.v1.accounts.retrieve(account_id)
        except stripe.StripeError as exc:
            if isinstance(exc, _FINAL) and _code(exc) in _NO_SUCH_ACCOUNT:
                return False
            raise _gateway_error(exc) from exc
        # Stripe omits capabilities never requested, and the SDK raises AttributeError for an
        # absent field whatever its type says; the plain dict has no such trap.
        capabilities = account.to_dict().get("capabilities") or {}
        return bool(capabilities.get("transfers") == "active")

    def available_balance(self, currency: str) -> int:
        try:
            balance = self._client.v1.balance.retrieve()
        except stripe.StripeError as exc:
            raise _gateway_error(exc) from exc
        wanted = currency.lower()
        return sum(funds.amount for funds in balance.available if funds.currency == wanted)


def _to_transfer(transfer: stripe.Transfer) -> Transfer:
    # An id unless expanded, and we never expand it; nullable only in the SDK's types.
    if not isinstance(transfer.destination, str):
        raise GatewayUnavailable(f"Stripe sent transfer {transfer.id} without a destination id")
    return Transfer(
        transfer_id=transfer.id,
        # A StripeObject is no longer a dict in stripe 16: no .get() on it.
        payout_id=transfer.metadata.to_dict().get("payout_id"),
        destination=transfer.destination,
        amount_minor=transfer.amount,
        currency=transfer.currency.upper(),
        transfer_group=transfer.transfer_group,
        created=datetime.fromtimestamp(transfer.created, UTC),
    )


def _gateway_error(exc: stripe.StripeError) -> GatewayError:
    if isinstance(exc, _FINAL):
        return TransferRejected(f"Stripe refused the request: {_detail(exc)}")
    return GatewayUnavailable(f"Stripe did not answer conclusively: {_detail(exc)}")


def _code(exc: stripe.StripeError) -> str | None:
    """Stripe's error code; the SDK leaves `exc.code` unset on some classes (PermissionError)."""
    return exc.error.code if exc.error is not None else exc.code


def _detail(exc: stripe.StripeError) -> str:
    """Stripe's message, then what an operator needs to look the request up."""
    facts = [
        f"{name} {value}"
        for name, value in (
            ("code", _code(exc)),
            ("HTTP", exc.http_status),
            ("request", exc.request_id),
        )
        if value is not None
    ]
    # One line: the SDK's network errors come wrapped over several.
    message = " ".join((exc.user_message or type(exc).__name__).split())
    return f"{message} [{', '.join(facts)}]" if facts else message
