"""The SDK against a live `fairshare serve`: typed results, one charge per logical search, and
typed exceptions carrying the server's problem documents."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contracts import Citation, Dataset, SearchResponse, SearchResult, Statement
from fairshare_sdk import (
    AsyncFairshare,
    AuthenticationError,
    ConflictError,
    Fairshare,
    FairshareError,
    InvalidRequest,
    NotFoundError,
    PaymentRequired,
    PermissionDenied,
)
from ledger.customers import CustomerAccounts
from ledger.db import make_engine
from tests.sdk.conftest import DATASET, QUERY, Agent, Deployment

PROBLEMS = "https://fairshare.dev/problems/"


def test_sync_search_returns_contract_types_and_is_charged_once(
    deployment: Deployment, agent: Agent
) -> None:
    with Fairshare(agent.key, deployment.base_url) as fairshare:
        found = fairshare.search(QUERY, top_k=3)
        assert isinstance(found, SearchResponse)
        assert len(found.results) == 3
        for result in found.results:
            assert isinstance(result, SearchResult) and isinstance(result.citation, Citation)
            assert result.citation.dataset_id == DATASET and result.citation.attribution
            assert result.citation.char_end - result.citation.char_start == len(result.text)
        assert found.cost_micros == sum(r.price_micros for r in found.results) > 0
        assert found.receipt

        assert fairshare.balance().balance_micros == -found.cost_micros
        receipt = fairshare.receipt(found.query_id)
        assert receipt.claims.cost_micros == found.cost_micros
        assert [h.chunk_id for h in receipt.claims.hits] == [r.chunk_id for r in found.results]
        assert receipt.key_id in {key["kid"] for key in fairshare.receipt_keys()["keys"]}
        bought = fairshare.chunk(found.results[0].chunk_id)
        assert bought.purchased and bought.text == found.results[0].text
        assert bought.citation == found.results[0].citation


async def test_async_client_searches_and_reads_the_catalog(
    deployment: Deployment, agent: Agent
) -> None:
    async with AsyncFairshare(agent.key, deployment.base_url) as fairshare:
        catalog = await fairshare.datasets()
        assert [d.id for d in catalog] == [DATASET] and isinstance(catalog[0], Dataset)
        price = catalog[0].licence.price_per_hit_micros
        found = await fairshare.search(
            QUERY, top_k=5, datasets=[DATASET], max_cost_micros=2 * price, rerank=False
        )
        # The budget buys two passages at this licence's price, whatever top_k asks for.
        assert len(found.results) == 2 and found.cost_micros == 2 * price
        assert found.reranked is False
        assert (await fairshare.balance()).balance_micros == -found.cost_micros


def test_an_explicit_idempotency_key_replays_and_charges_once(
    deployment: Deployment, agent: Agent
) -> None:
    with Fairshare(agent.key, deployment.base_url) as fairshare:
        first = fairshare.search(QUERY, top_k=2, idempotency_key="sdk-replay-1")
        again = fairshare.search(QUERY, top_k=2, idempotency_key="sdk-replay-1")
        assert again == first
        assert fairshare.balance().balance_micros == -first.cost_micros

        with pytest.raises(ConflictError) as conflict:
            fairshare.search(QUERY, top_k=3, idempotency_key="sdk-replay-1")
        assert conflict.value.status == 409 and conflict.value.type == PROBLEMS + "conflict"
        # Without a key, each call is its own search, charged again.
        fresh = fairshare.search(QUERY, top_k=2)
        assert fresh.query_id != first.query_id
        assert fairshare.balance().balance_micros == -2 * first.cost_micros


def test_errors_are_typed_and_carry_the_problem(deployment: Deployment, agent: Agent) -> None:
    with (
        pytest.raises(AuthenticationError) as unauthorized,
        Fairshare("fs_not-a-real-key", deployment.base_url) as stranger,
    ):
        stranger.search(QUERY)
    assert unauthorized.value.status == 401
    assert unauthorized.value.type == PROBLEMS + "unauthorized"
    assert unauthorized.value.instance == "/v1/search" and unauthorized.value.detail

    period = datetime.now(UTC).strftime("%Y-%m")
    with Fairshare(agent.key, deployment.base_url) as fairshare:
        with pytest.raises(PermissionDenied) as forbidden:
            fairshare.statement(deployment.owner_id, period)
        assert forbidden.value.status == 403

        with pytest.raises(NotFoundError) as missing:
            fairshare.chunk("no-such-chunk")
        assert missing.value.status == 404 and missing.value.instance == "/v1/chunks/no-such-chunk"

        with pytest.raises(InvalidRequest) as invalid:
            fairshare.search(QUERY, top_k=0)
        assert invalid.value.status == 400 and "top_k" in invalid.value.detail

        with pytest.raises(PaymentRequired) as too_little:
            fairshare.search(QUERY, max_cost_micros=1)
        assert too_little.value.status == 402
        assert too_little.value.required_micros is not None and too_little.value.required_micros > 1
        assert too_little.value.extensions["max_cost_micros"] == 1
        assert isinstance(too_little.value, FairshareError)
        assert fairshare.balance().balance_micros == 0  # nothing was charged


async def test_prepaid_customer_without_funds_gets_payment_required_with_balance(
    deployment: Deployment, agent: Agent
) -> None:
    engine = make_engine(deployment.database_url)
    try:
        await CustomerAccounts(engine).set_credit_limit(agent.customer_id, 0)
    finally:
        await engine.dispose()
    async with AsyncFairshare(agent.key, deployment.base_url) as fairshare:
        with pytest.raises(PaymentRequired) as refused:
            await fairshare.search(QUERY, top_k=2)
    assert refused.value.balance_micros == 0 and refused.value.available_micros == 0
    assert refused.value.required_micros is not None and refused.value.required_micros > 0


def test_owner_reads_its_statement_and_payouts(deployment: Deployment, agent: Agent) -> None:
    period = datetime.now(UTC).strftime("%Y-%m")
    with (
        Fairshare(deployment.owner_key, deployment.base_url) as owner,
        Fairshare(agent.key, deployment.base_url) as customer,
    ):
        before = owner.statement(deployment.owner_id, period)
        found = customer.search(QUERY, top_k=4)
        after = owner.statement(deployment.owner_id, period)
        assert isinstance(after, Statement) and after.period == period
        assert after.hit_count - before.hit_count == len(found.results)
        assert after.gross_micros - before.gross_micros == found.cost_micros
        assert owner.payouts(deployment.owner_id, period) == []
        with pytest.raises(PermissionDenied):
            owner.search(QUERY)  # an owner's key reads; it does not buy
