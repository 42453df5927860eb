"""StripeGateway through the real stripe SDK, over HTTP, against the local Stripe fake.

The last tests talk to the fake with plain httpx, to show it refuses what Stripe refuses: a fake
that accepted anything would let a wrong request pass here and fail in production.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from ledger.gateway import GatewayUnavailable, PayoutGateway, Transfer, TransferRejected
from ledger.stripe_gateway import StripeGateway
from tests.stripe_fake import CapabilityStatus, FakeStripe, FaultMode

GROUP = "period-2026-01"


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as server:
        yield server


@pytest.fixture
def gateway(fake: FakeStripe) -> StripeGateway:
    return StripeGateway(fake.api_key, api_base=fake.api_base)


@pytest.fixture
def account(fake: FakeStripe) -> str:
    fake.set_balance("usd", 10_000)
    return fake.add_account("acct_owner1")


def pay(
    gateway: PayoutGateway,
    key: str,
    destination: str = "acct_owner1",
    amount_minor: int = 1_200,
    group: str = GROUP,
) -> Transfer:
    return gateway.create_transfer(
        idempotency_key=key,
        destination=destination,
        amount_minor=amount_minor,
        currency="USD",
        transfer_group=group,
        metadata={"payout_id": key, "owner_id": "acme"},
    )


def test_a_transfer_goes_out_with_stripes_form_fields(
    fake: FakeStripe, gateway: StripeGateway, account: str
) -> None:
    transfer = pay(gateway, "po_1")

    sent = fake.requests[-1]
    assert (sent.method, sent.path, sent.idempotency_key) == ("POST", "/v1/transfers", "po_1")
    assert sent.params == {
        "amount": "1200",
        "currency": "usd",
        "destination": account,
        "transfer_group": GROUP,
        "metadata[payout_id]": "po_1",
        "metadata[owner_id]": "acme",
    }
    [made] = fake.transfers
    assert transfer == Transfer(
        transfer_id=made["id"],
        payout_id="po_1",
        destination=account,
        amount_minor=1_200,
        currency="USD",
        transfer_group=GROUP,
        created=transfer.created,
    )
    assert transfer.transfer_id.startswith("tr_")
    assert int(transfer.created.timestamp()) == made["created"]
    assert fake.balance("usd") == 8_800


def test_the_same_key_and_parameters_replay_the_one_transfer(
    fake: FakeStripe, gateway: StripeGateway, account: str
) -> None:
    first = pay(gateway, "po_1")
    again = pay(gateway, "po_1")

    assert again == first
    assert len(fake.transfers) == 1
    assert fake.balance("usd") == 8_800
    assert [r.replayed for r in fake.requests] == [False, True]


def test_the_same_key_with_other_parameters_is_rejected_as_our_bug(
    fake: FakeStripe, gateway: StripeGateway, account: str
) -> None:
    pay(gateway, "po_1")
    with pytest.raises(TransferRejected, match=r"key 'po_1' was already used .* bug in the caller"):
        pay(gateway, "po_1", amount_minor=1_300)
    assert len(fake.transfers) == 1
    assert fake.balance("usd") == 8_800


@pytest.mark.parametrize(
    ("destination", "balance", "expected"),
    [
        ("acct_nobody", 10_000, r"No such destination: 'acct_nobody' \[code resource_missing"),
        ("acct_owner1", 1_000, r"\[code balance_insufficient, HTTP 400"),
        ("acct_unverified", 10_000, r"\[code insufficient_capabilities_for_transfer"),
    ],
)
def test_stripe_refusals_are_final(
    fake: FakeStripe, gateway: StripeGateway, destination: str, balance: int, expected: str
) -> None:
    fake.add_account("acct_owner1")
    fake.add_account("acct_unverified", transfers="pending")
    fake.set_balance("usd", balance)
    with pytest.raises(TransferRejected, match=expected):
        pay(gateway, "po_1", destination=destination)
    assert fake.transfers == []
    assert fake.balance("usd") == balance


def test_a_refusal_is_saved_under_its_key_so_a_new_attempt_needs_a_new_key(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.add_account("acct_owner1")
    fake.set_balance("usd", 1_000)
    with pytest.raises(TransferRejected, match="balance_insufficient"):
        pay(gateway, "po_1")
    fake.set_balance("usd", 10_000)

    with pytest.raises(TransferRejected, match="balance_insufficient"):
        pay(gateway, "po_1")
    assert fake.requests[-1].replayed
    assert pay(gateway, "po_2").payout_id == "po_2"


@pytest.mark.parametrize("mode", ["error_before", "rate_limited", "error_after", "drop_after"])
def test_an_unknown_outcome_is_retried_with_the_same_key_to_one_transfer(
    fake: FakeStripe, gateway: StripeGateway, account: str, mode: FaultMode
) -> None:
    fake.fail_next(mode)
    with pytest.raises(GatewayUnavailable, match="Stripe did not answer conclusively"):
        pay(gateway, "po_1")
    assert len(fake.requests) == 1  # the SDK did not retry behind our back

    transfer = pay(gateway, "po_1")
    [made] = fake.transfers
    assert transfer.transfer_id == made["id"]
    assert fake.balance("usd") == 8_800
    # Where Stripe had made the transfer, the retry is answered from its idempotency store.
    assert fake.requests[-1].replayed == mode.endswith("_after")


def test_a_timeout_is_an_unknown_outcome(fake: FakeStripe, account: str) -> None:
    impatient = StripeGateway(fake.api_key, api_base=fake.api_base, timeout_s=0.5)
    fake.fail_next("hang_after")
    with pytest.raises(GatewayUnavailable, match="ReadTimeout"):
        pay(impatient, "po_1")

    assert pay(impatient, "po_1").transfer_id == fake.transfers[0]["id"]
    assert fake.balance("usd") == 8_800


def test_a_key_that_stripe_has_forgotten_moves_money_again(
    fake: FakeStripe, gateway: StripeGateway, account: str
) -> None:
    """Why payouts search for a submitted payout's transfer before creating it again."""
    pay(gateway, "po_1")
    fake.forget_idempotency_keys()
    pay(gateway, "po_1")
    assert len(fake.transfers) == 2
    assert fake.balance("usd") == 7_600


def test_list_transfers_pages_through_everything_newest_first(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    fake.add_account("acct_owner1")
    fake.set_balance("usd", 1_000_000)
    for n in range(230):
        pay(gateway, f"po_{n}", amount_minor=100 + n, group=GROUP if n % 3 else "period-2026-02")
    newest_first = [t["id"] for t in reversed(fake.transfers)]
    before = len(fake.requests)

    listed = list(gateway.list_transfers())

    assert [t.transfer_id for t in listed] == newest_first
    pages = fake.requests[before:]
    assert [r.params.get("starting_after") for r in pages] == [None, *newest_first[99::100]]
    in_group = list(gateway.list_transfers(transfer_group=GROUP))
    assert [t.payout_id for t in in_group] == [f"po_{n}" for n in reversed(range(230)) if n % 3]
    assert {t.transfer_group for t in in_group} == {GROUP}


@pytest.mark.parametrize(
    ("transfers", "ready"),
    [("active", True), ("pending", False), ("inactive", False), (None, False)],
)
def test_account_ready_means_the_transfers_capability_is_active(
    fake: FakeStripe, gateway: StripeGateway, transfers: CapabilityStatus | None, ready: bool
) -> None:
    fake.add_account("acct_owner1", transfers=transfers)
    assert gateway.account_ready("acct_owner1") is ready


def test_an_account_stripe_does_not_know_is_not_ready(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    assert gateway.account_ready("acct_nobody") is False
    assert fake.requests[-1].status == 403  # account_invalid, as Stripe answers
    assert gateway.account_ready("") is False


def test_available_balance_is_per_currency(fake: FakeStripe, gateway: StripeGateway) -> None:
    fake.set_balance("usd", 5_000)
    fake.set_balance("eur", 700)
    assert gateway.available_balance("USD") == 5_000
    assert gateway.available_balance("EUR") == 700
    assert gateway.available_balance("GBP") == 0


def test_a_wrong_api_key_is_final_and_moves_nothing(fake: FakeStripe, account: str) -> None:
    stranger = StripeGateway("sk_test_not_ours", api_base=fake.api_base)
    with pytest.raises(TransferRejected, match=r"Invalid API Key provided.*HTTP 401"):
        pay(stranger, "po_1")
    with pytest.raises(TransferRejected, match="HTTP 401"):
        stranger.account_ready(account)
    assert fake.transfers == []


# -- the fake, on the wire ---------------------------------------------------------------------


@pytest.fixture
def wire(fake: FakeStripe) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    with httpx.Client(base_url=fake.api_base, headers=headers) as client:
        yield client


def transfer_form(**changes: str) -> dict[str, str]:
    return {"amount": "1200", "currency": "usd", "destination": "acct_owner1", **changes}


def test_the_fake_wants_a_bearer_key(fake: FakeStripe) -> None:
    answer = httpx.get(f"{fake.api_base}/v1/balance")
    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert "did not provide an API key" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("form", "code", "param"),
    [
        (transfer_form(amont="5"), "parameter_unknown", "amont"),
        ({"amount": "1200", "currency": "usd"}, "parameter_missing", "destination"),
        (transfer_form(amount="12.50"), "parameter_invalid_integer", "amount"),
        (transfer_form(amount="0"), "parameter_invalid_integer", "amount"),
        (transfer_form(currency="USD"), "parameter_invalid_string", "currency"),
    ],
)
def test_the_fake_refuses_malformed_transfers(
    fake: FakeStripe, wire: httpx.Client, account: str, form: dict[str, str], code: str, param: str
) -> None:
    answer = wire.post("/v1/transfers", data=form, headers={"Idempotency-Key": "k1"})
    assert answer.status_code == 400
    assert answer.json()["error"] | {"message": ""} == {
        "type": "invalid_request_error",
        "code": code,
        "param": param,
        "message": "",
    }
    # A request refused before it ran is not saved: the key stays free for a corrected one.
    fixed = wire.post("/v1/transfers", data=transfer_form(), headers={"Idempotency-Key": "k1"})
    assert fixed.status_code == 200
    assert "Idempotent-Replayed" not in fixed.headers
    assert fake.balance("usd") == 8_800


def test_the_fake_replays_with_stripes_header(wire: httpx.Client, account: str) -> None:
    first = wire.post("/v1/transfers", data=transfer_form(), headers={"Idempotency-Key": "k1"})
    again = wire.post("/v1/transfers", data=transfer_form(), headers={"Idempotency-Key": "k1"})
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    other = wire.post(
        "/v1/transfers", data=transfer_form(amount="1"), headers={"Idempotency-Key": "k1"}
    )
    assert other.status_code == 400
    assert other.json()["error"]["type"] == "idempotency_error"


def test_the_fake_pages_both_ways_and_finds_by_id(wire: httpx.Client, account: str) -> None:
    ids = [
        wire.post("/v1/transfers", data=transfer_form(amount="10")).json()["id"] for _ in range(5)
    ]
    newest_first = ids[::-1]

    page = wire.get("/v1/transfers", params={"limit": 2, "starting_after": newest_first[1]}).json()
    assert ([t["id"] for t in page["data"]], page["has_more"]) == (newest_first[2:4], True)
    page = wire.get("/v1/transfers", params={"limit": 2, "ending_before": newest_first[2]}).json()
    assert ([t["id"] for t in page["data"]], page["has_more"]) == (newest_first[:2], False)
    assert page["object"] == "list" and page["url"] == "/v1/transfers"

    assert wire.get(f"/v1/transfers/{ids[0]}").json()["amount"] == 10
    missing = wire.get("/v1/transfers/tr_nothing")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "resource_missing")
    too_many = wire.get("/v1/transfers", params={"limit": 101})
    assert too_many.json()["error"]["code"] == "parameter_invalid_integer"
