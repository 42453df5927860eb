"""The SDK's `languages` option against a live `fairshare serve` (the demo's English guidelines)."""

from __future__ import annotations

import pytest

from fairshare_sdk import AsyncFairshare, Fairshare, InvalidRequest
from tests.sdk.conftest import QUERY, Agent, Deployment


def test_languages_filter_the_results_and_the_query_language_is_reported(
    deployment: Deployment, agent: Agent
) -> None:
    with Fairshare(agent.key, deployment.base_url) as fairshare:
        english = fairshare.search(QUERY, top_k=2, languages=["en"])
        assert len(english.results) == 2 and english.query_language == "en"
        german = fairshare.search(QUERY, top_k=2, languages=["de", "fr"])
        assert german.results == [] and german.cost_micros == 0
        assert fairshare.balance().balance_micros == -english.cost_micros
        with pytest.raises(InvalidRequest) as unknown:
            fairshare.search(QUERY, languages=["xx"])
        assert unknown.value.status == 400 and "unknown language code" in unknown.value.detail


async def test_async_client_sends_languages_too(deployment: Deployment, agent: Agent) -> None:
    async with AsyncFairshare(agent.key, deployment.base_url) as fairshare:
        found = await fairshare.search(QUERY, top_k=1, languages=["de"])
        assert found.results == []
