"""A local fake of the slice of Stripe's API that payouts use, served over real HTTP.

The real `stripe` SDK talks to it exactly as it talks to api.stripe.com (point the client's
"api" base address at `FakeStripe.api_base`), so tests exercise our request encoding, the SDK's
decoding and error classes, and the network failures in between. It models one platform account
with one secret key; what it mimics, and where it is stricter than Stripe:

- Bearer auth (401 without a valid key); form-encoded bodies; `parameter_unknown`,
  `parameter_missing` and `parameter_invalid_integer` errors. `currency` must be lower-case (Stripe
  documents lower-case; being strict proves we send it).
- Transfers draw on the platform's available balance (`balance_insufficient`), go only to known
  accounts (`No such destination`) whose `transfers` capability is active.
- Idempotency as Stripe documents it: the first result of a request that got past validation is
  saved, success or error, and replayed for the same key and parameters with
  `Idempotent-Replayed: true`; the same key with other parameters is an `idempotency_error`.
- An unknown account is a 403 `account_invalid`, as Stripe answers a platform asking about an
  account it cannot see, not a 404.

Faults (`fail_next`) model what happens between Stripe and us: an answer that is an error before
Stripe did anything, or a transfer that Stripe made whose answer never arrived.

    with FakeStripe() as stripe_api:
        stripe_api.add_account("acct_owner1")
        stripe_api.set_balance("usd", 10_000)
        gateway = StripeGateway(stripe_api.api_key, api_base=stripe_api.api_base)
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

DEFAULT_API_KEY = "sk_test_fairshare_fake"
_Fingerprint = tuple[str, str, tuple[tuple[str, str], ...]]  # method, path, sorted params
CapabilityStatus = Literal["active", "inactive", "pending"]
FaultMode = Literal["error_before", "rate_limited", "error_after", "drop_after", "hang_after"]
_CREATE_PARAMS = {"amount", "currency", "destination", "transfer_group", "description"}
_LIST_PARAMS = {"limit", "starting_after", "ending_before", "transfer_group", "destination"}
_IDEMPOTENCY_MISMATCH = (
    "Keys for idempotent requests can only be used with the same parameters they were first "
    "used with. Try using a key other than '{key}' if you meant to execute a different request."
)


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request as the fake saw it; `status` is None when no answer was sent."""

    method: str
    path: str
    params: dict[str, str]  # form fields as sent, e.g. {"metadata[payout_id]": "po_1"}
    idempotency_key: str | None
    status: int | None
    replayed: bool


@dataclass(slots=True)
class _Fault:
    mode: FaultMode
    method: str
    path: str
    remaining: int


class StripeApiError(Exception):
    """Raised inside a handler: becomes a Stripe-shaped error body with this status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        error = {"type": kind, "message": message, "code": code, "param": param}
        self.body = {"error": {k: v for k, v in error.items() if v is not None}}


# What Stripe (or what stands in front of it) answers when a request never reaches the endpoint.
_REFUSALS: dict[FaultMode | None, StripeApiError] = {
    "error_before": StripeApiError(500, "An unknown error occurred", kind="api_error"),
    "rate_limited": StripeApiError(429, "Request rate limit exceeded.", code="rate_limit"),
}


class FakeStripe:
    """Stripe's transfers, accounts and balance endpoints on 127.0.0.1; use as a context manager."""

    def __init__(self, api_key: str = DEFAULT_API_KEY) -> None:
        self.api_key = api_key
        self._lock = threading.Lock()
        self._accounts: dict[str, dict[str, Any]] = {}
        self._balances: dict[str, int] = {}
        self._transfers: list[dict[str, Any]] = []  # oldest first
        self._saved: dict[str, tuple[_Fingerprint, int, dict[str, Any]]] = {}
        self._faults: list[_Fault] = []
        self._log: list[LoggedRequest] = []
        self._unhang = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def api_base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeStripe:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._unhang.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # -- test controls ------------------------------------------------------------------------

    def add_account(
        self, account_id: str | None = None, *, transfers: CapabilityStatus | None = "active"
    ) -> str:
        """A connected account whose `transfers` capability has this status (None: never asked)."""
        account_id = account_id or f"acct_{secrets.token_hex(8)}"
        enabled = transfers == "active"
        with self._lock:
            self._accounts[account_id] = {
                "id": account_id,
                "object": "account",
                "type": "express",
                "country": "US",
                "default_currency": "usd",
                "created": int(time.time()),
                "metadata": {},
                "capabilities": {"transfers": transfers} if transfers else {},
                "charges_enabled": enabled,
                "payouts_enabled": enabled,
                "details_submitted": enabled,
            }
        return account_id

    def set_balance(self, currency: str, amount_minor: int) -> None:
        with self._lock:
            self._balances[currency.lower()] = amount_minor

    def balance(self, currency: str) -> int:
        with self._lock:
            return self._balances.get(currency.lower(), 0)

    @property
    def transfers(self) -> list[dict[str, Any]]:
        """Every transfer made, oldest first, as Stripe would return it."""
        with self._lock:
            return copy.deepcopy(self._transfers)

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def fail_next(
        self, mode: FaultMode, count: int = 1, *, method: str = "POST", path: str = "/v1/transfers"
    ) -> None:
        """Fault the next `count` requests to `method path`.

        error_before / rate_limited: answer 500 / 429 without doing anything. error_after: do
        the work (a transfer is made and saved under its idempotency key) but answer 500, as when
        the answer is lost on the way back. drop_after: do the work and close the connection
        without answering. hang_after: do the work and never answer, until the client times out.
        """
        with self._lock:
            self._faults.append(_Fault(mode, method, path, count))

    def forget_idempotency_keys(self) -> None:
        """What Stripe does after 24 hours: a reused key then makes a new request."""
        with self._lock:
            self._saved.clear()

    # -- the API ------------------------------------------------------------------------------

    def _take_fault(self, method: str, path: str) -> FaultMode | None:
        with self._lock:
            for fault in self._faults:
                if fault.method == method and fault.path == path and fault.remaining > 0:
                    fault.remaining -= 1
                    return fault.mode
        return None

    def _record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    def _serve(
        self, method: str, path: str, params: dict[str, str], auth: str | None, key: str | None
    ) -> tuple[int, dict[str, Any], bool]:
        """(status, body, replayed) for one request; requests are served one at a time."""
        saved_as = key if method == "POST" else None  # Stripe ignores keys on GET
        fingerprint = (method, path, tuple(sorted(params.items())))
        with self._lock:
            try:
                self._authenticate(auth)
                if saved_as is not None and saved_as in self._saved:
                    first, status, body = self._saved[saved_as]
                    if first != fingerprint:
                        message = _IDEMPOTENCY_MISMATCH.format(key=key)
                        raise StripeApiError(400, message, kind="idempotency_error")
                    return status, body, True
                if (method, path) == ("POST", "/v1/transfers"):
                    _check_create(params)
            except StripeApiError as exc:  # never executed, so never saved
                return exc.status, exc.body, False
            try:
                status, body = 200, self._route(method, path, params)
            except StripeApiError as exc:
                status, body = exc.status, exc.body
            if saved_as is not None:
                self._saved[saved_as] = (fingerprint, status, body)
            return status, body, False

    def _authenticate(self, auth: str | None) -> None:
        if not auth or not auth.startswith("Bearer "):
            raise StripeApiError(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY').",
            )
        given = auth.removeprefix("Bearer ")
        if given != self.api_key:
            raise StripeApiError(401, f"Invalid API Key provided: {_redact(given)}")

    def _route(self, method: str, path: str, params: dict[str, str]) -> dict[str, Any]:
        if (method, path) == ("POST", "/v1/transfers"):
            return self._create_transfer(params)
        if (method, path) == ("GET", "/v1/transfers"):
            return self._list_transfers(params)
        if method == "GET" and (m := re.fullmatch(r"/v1/transfers/([^/]+)", path)):
            for transfer in self._transfers:
                if transfer["id"] == m[1]:
                    return transfer
            raise StripeApiError(
                404, f"No such transfer: '{m[1]}'", code="resource_missing", param="id"
            )
        if method == "GET" and (m := re.fullmatch(r"/v1/accounts/([^/]+)", path)):
            if m[1] not in self._accounts:
                raise StripeApiError(
                    403,
                    f"The provided key '{_redact(self.api_key)}' does not have access to account "
                    f"'{m[1]}' (or that account does not exist). Application access may have "
                    "been revoked.",
                    code="account_invalid",
                )
            return self._accounts[m[1]]
        if (method, path) == ("GET", "/v1/balance"):
            available = [
                {"amount": amount, "currency": currency, "source_types": {"card": amount}}
                for currency, amount in sorted(self._balances.items())
            ]
            return {"object": "balance", "livemode": False, "available": available, "pending": []}
        raise StripeApiError(404, f"Unrecognized request URL ({method}: {path}).")

    def _create_transfer(self, params: dict[str, str]) -> dict[str, Any]:
        amount, currency, destination = (
            int(params["amount"]),
            params["currency"],
            params["destination"],
        )
        account = self._accounts.get(destination)
        if account is None:
            raise StripeApiError(
                400,
                f"No such destination: '{destination}'",
                code="resource_missing",
                param="destination",
            )
        if account["capabilities"].get("transfers") != "active":
            raise StripeApiError(
                400,
                "Your destination account needs to have at least one of the "
                "following capabilities enabled: transfers, crypto_transfers, "
                "legacy_payments",
                code="insufficient_capabilities_for_transfer",
            )
        if self._balances.get(currency, 0) < amount:
            raise StripeApiError(
                400,
                "You have insufficient available funds in your Stripe account.",
                code="balance_insufficient",
            )
        self._balances[currency] -= amount
        transfer_id = f"tr_{secrets.token_hex(12)}"
        transfer = {
            "id": transfer_id,
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "balance_transaction": f"txn_{secrets.token_hex(12)}",
            "created": int(time.time()),
            "currency": currency,
            "description": params.get("description"),
            "destination": destination,
            "destination_payment": f"py_{secrets.token_hex(12)}",
            "livemode": False,
            "reversed": False,
            "source_transaction": None,
            "source_type": "card",
            "transfer_group": params.get("transfer_group"),
            "metadata": {k[9:-1]: v for k, v in params.items() if k.startswith("metadata[")},
            "reversals": {
                "object": "list",
                "data": [],
                "has_more": False,
                "total_count": 0,
                "url": f"/v1/transfers/{transfer_id}/reversals",
            },
        }
        self._transfers.append(transfer)
        return transfer

    def _list_transfers(self, params: dict[str, str]) -> dict[str, Any]:
        _check_params(params, _LIST_PARAMS)
        limit = _positive_int(params, "limit") if "limit" in params else 10
        if limit > 100:
            raise StripeApiError(
                400,
                "This value must be less than or equal to 100.",
                code="parameter_invalid_integer",
                param="limit",
            )
        newest_first = [
            t
            for t in reversed(self._transfers)
            if all(t[f] == params[f] for f in ("transfer_group", "destination") if f in params)
        ]
        ids = [t["id"] for t in newest_first]
        for cursor in ("starting_after", "ending_before"):
            if cursor in params and params[cursor] not in ids:
                raise StripeApiError(
                    400,
                    f"No such transfer: '{params[cursor]}'",
                    code="resource_missing",
                    param=cursor,
                )
        if "ending_before" in params:  # the `limit` items just newer than the cursor
            newer = newest_first[: ids.index(params["ending_before"])]
            page, has_more = newer[-limit:], len(newer) > limit
        else:
            start = ids.index(params["starting_after"]) + 1 if "starting_after" in params else 0
            page, has_more = newest_first[start : start + limit], len(newest_first) > start + limit
        return {"object": "list", "data": page, "has_more": has_more, "url": "/v1/transfers"}


def _check_params(
    params: dict[str, str], allowed: set[str], required: tuple[str, ...] = ()
) -> None:
    for name in params:
        if name not in allowed and not re.fullmatch(r"metadata\[[^\[\]]+\]", name):
            raise StripeApiError(
                400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name
            )
    for name in required:
        if not params.get(name):
            raise StripeApiError(
                400, f"Missing required param: {name}.", code="parameter_missing", param=name
            )


def _check_create(params: dict[str, str]) -> None:
    _check_params(params, _CREATE_PARAMS, required=("amount", "currency", "destination"))
    _positive_int(params, "amount")
    if not re.fullmatch(r"[a-z]{3}", params["currency"]):
        raise StripeApiError(
            400,
            f"Invalid currency: {params['currency']}. Stripe currencies are lower-case ISO codes.",
            code="parameter_invalid_string",
            param="currency",
        )


def _redact(api_key: str) -> str:
    return f"{api_key[:8]}{'*' * max(len(api_key) - 12, 0)}{api_key[-4:]}"


def _positive_int(params: dict[str, str], name: str) -> int:
    if not re.fullmatch(r"\d+", params[name]) or int(params[name]) < 1:
        raise StripeApiError(
            400,
            f"Invalid positive integer: {params[name]}",
            code="parameter_invalid_integer",
            param=name,
        )
    return int(params[name])


def _handler_for(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the request log is `FakeStripe.requests`."""

        def _handle(self, method: str) -> None:
            url = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            params = dict(
                parse_qsl(body if method == "POST" else url.query, keep_blank_values=True)
            )
            key = self.headers.get("Idempotency-Key")
            fault = fake._take_fault(method, url.path)
            if fault in _REFUSALS:
                error = _REFUSALS[fault]
                status, answer, replayed = error.status, error.body, False
            else:
                auth = self.headers.get("Authorization")
                status, answer, replayed = fake._serve(method, url.path, params, auth, key)
            if fault == "error_after":
                status, answer = _REFUSALS["error_before"].status, _REFUSALS["error_before"].body
            silent = fault in ("drop_after", "hang_after")
            # Logged before answering: once the client has its answer, the log must show it.
            fake._record(
                LoggedRequest(method, url.path, params, key, None if silent else status, replayed)
            )
            if fault == "hang_after":
                fake._unhang.wait()
            if silent:
                self.close_connection = True  # the server closes the socket; nothing was sent
            else:
                self._answer(status, answer, replayed=replayed)

        def _answer(self, status: int, body: dict[str, Any], *, replayed: bool) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", f"req_{secrets.token_hex(7)}")
            if replayed:
                self.send_header("Idempotent-Replayed", "true")
            self.end_headers()
            self.wfile.write(data)

    return Handler
