"""Ledger routes: receipts and their key, balances and top-ups, reversals, periods, payouts."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import get, post, put
from litestar.params import Parameter
from msgspec import Meta

from contracts import NotFound, Payout
from contracts.catalog import Territory
from contracts.ledger import ReversalReason
from contracts.views import CustomerBalance, Receipt
from ledger.customers import MAX_TOPUP_MICROS, CustomerAccounts, Topup
from ledger.keys import Principal
from ledger.periods import close_period
from ledger.receipts import receipt_header, verify_receipt
from ledger.reversals import Reversal, reverse_query
from service.auth import require_owner_access, require_role
from service.runtime import Runtime

_receipt_of = msgspec.json.Decoder(dict[str, Any])


class ReversalCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    query_id: str
    reason: ReversalReason
    rank: int | None = None  # None: every hit of the query


class TopupCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    amount_micros: Annotated[int, Meta(gt=0, le=MAX_TOPUP_MICROS)]
    reference: Annotated[str, Meta(min_length=1, max_length=255)]  # the payment's id


class CreditLimit(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    credit_limit_micros: Annotated[int, Meta(ge=0, le=MAX_TOPUP_MICROS)] | None


class PeriodClosed(msgspec.Struct, frozen=True, kw_only=True):
    period: str
    closed_now: bool  # False: it was already closed


@get("/v1/keys/receipts", summary="Public key(s) that sign receipts, as a JWK set", tags=["ledger"])
async def receipt_keys(runtime: Runtime) -> dict[str, Any]:
    return runtime.receipts.jwks()


@get("/v1/receipts/{query_id:str}", summary="The signed receipt of one search", tags=["ledger"])
async def get_receipt(query_id: str, runtime: Runtime, principal: Principal) -> Receipt:
    stored = await runtime.hits.stored_response(query_id)
    # Same answer for "absent" and "not yours": a query id says nothing about other customers.
    missing = NotFound(f"no receipt for query {query_id}", query_id=query_id)
    if stored is None:
        raise missing
    customer_id, response, owners = stored
    allowed = (
        principal.role == "admin"
        or principal.customer_id == customer_id
        or (principal.role == "owner" and principal.owner_id in owners)
    )
    if not allowed:
        raise missing
    jws = str(_receipt_of.decode(response).get("receipt", ""))
    if not jws:
        raise NotFound(f"query {query_id} was recorded before receipts existed")
    return Receipt(
        query_id=query_id,
        key_id=str(receipt_header(jws).get("kid", "")),
        jws=jws,
        claims=verify_receipt(jws, runtime.receipts.jwks()),
    )


@post("/v1/admin/reversals", status_code=201, summary="Reverse a query's hits", tags=["ledger"])
async def create_reversal(data: ReversalCreate, runtime: Runtime, principal: Principal) -> Reversal:
    require_role(principal, "admin")
    return await reverse_query(runtime.engine, data.query_id, reason=data.reason, rank=data.rank)


@get(
    "/v1/balance",
    summary="Your prepaid balance, credit limit and what you may spend",
    tags=["ledger"],
)
async def my_balance(runtime: Runtime, principal: Principal) -> CustomerBalance:
    return await CustomerAccounts(runtime.engine).balance(principal.customer_id)


@post(
    "/v1/admin/customers/{customer_id:str}/topups",
    status_code=201,
    summary="Credit a prepaid top-up (idempotent per reference)",
    tags=["ledger"],
)
async def topup(
    customer_id: str, data: TopupCreate, runtime: Runtime, principal: Principal
) -> Topup:
    require_role(principal, "admin")
    return await CustomerAccounts(runtime.engine).topup(
        customer_id, amount_micros=data.amount_micros, reference=data.reference
    )


@put(
    "/v1/admin/customers/{customer_id:str}/credit-limit",
    summary="Set how far below zero a customer's balance may go (null: no limit)",
    tags=["ledger"],
)
async def credit_limit(
    customer_id: str, data: CreditLimit, runtime: Runtime, principal: Principal
) -> CustomerBalance:
    require_role(principal, "admin")
    return await CustomerAccounts(runtime.engine).set_credit_limit(
        customer_id, data.credit_limit_micros
    )


class CustomerTerritory(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # ISO 3166-1 alpha-2; null: unknown (licences limited to territories then serve nothing).
    territory: Territory | None


@put(
    "/v1/admin/customers/{customer_id:str}/territory",
    summary="Set the jurisdiction a customer is served in (licences' territories apply to it)",
    tags=["ledger"],
)
async def territory(
    customer_id: str, data: CustomerTerritory, runtime: Runtime, principal: Principal
) -> CustomerTerritory:
    require_role(principal, "admin")
    code = await CustomerAccounts(runtime.engine).set_territory(customer_id, data.territory)
    return CustomerTerritory(territory=code)


@post(
    "/v1/admin/periods/{period:str}/close",
    status_code=200,
    summary="Close an accounting month",
    tags=["ledger"],
)
async def close(period: str, runtime: Runtime, principal: Principal) -> PeriodClosed:
    require_role(principal, "admin")
    return PeriodClosed(period=period, closed_now=await close_period(runtime.engine, period))


@get("/v1/owners/{owner_id:str}/payouts", summary="An owner's payouts", tags=["ledger"])
async def owner_payouts(
    owner_id: str,
    runtime: Runtime,
    principal: Principal,
    period: str | None = Parameter(default=None, description="YYYY-MM; all periods if absent"),
) -> list[Payout]:
    require_owner_access(principal, owner_id)
    await runtime.catalog.get_owner(owner_id)  # 404 for an unknown owner, not an empty list
    return await runtime.payouts().list_payouts(owner_id=owner_id, period=period)
