"""Reading passages a page at a time never changes what a search delivers or charges."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contracts import SearchRequest
from ledger.keys import Principal
from ranking.selection import select_within_budget
from service.runtime import Runtime
from service.searching import Candidate, PassageLoader, choose, searchable_datasets

pytestmark = pytest.mark.asyncio(loop_scope="session")

QUERIES = ["interest rates and bond yields", "duty of care negligence", "sepsis antibiotics"]


async def test_paged_selection_equals_selection_over_every_candidate(
    demo_runtime: Runtime,
) -> None:
    snapshot = await demo_runtime.snapshot()
    principal = Principal(
        key_id="k", customer_id="c", customer_name="c", role="agent", owner_id=None, currency="USD"
    )
    prices = sorted({d.licence.price_per_hit_micros for d in snapshot.datasets.values()})
    # Budgets that skip the expensive results at the top and reach far down for cheap ones.
    budgets = [None, prices[0], prices[0] * 3 + 1, prices[-1] + prices[0], prices[-1] * 4]
    reached_past_first_page = False
    for query in QUERIES:
        request = SearchRequest(query=query, rerank=False)
        generations, _ = searchable_datasets(
            snapshot, request, principal, datetime.now(UTC), "local"
        )
        ranking = await demo_runtime.pipeline.search(
            query, generations=generations, rerank=False, texts=PassageLoader(demo_runtime).texts
        )
        everything = await demo_runtime.catalog.get_passages([r.chunk_id for r in ranking.items])
        all_candidates = [
            Candidate(
                r, everything[r.chunk_id], snapshot.datasets[everything[r.chunk_id].dataset_id]
            )
            for r in ranking.items
        ]
        for top_k in (1, 3, 10):
            for budget in budgets:
                request = SearchRequest(query=query, top_k=top_k, max_cost_micros=budget)
                loader = PassageLoader(demo_runtime)
                chosen, _ = await choose(ranking.items, loader, snapshot, generations, request)
                expected = select_within_budget(
                    all_candidates,
                    price=lambda c: c.dataset.licence.price_per_hit_micros,
                    top_k=top_k,
                    max_cost_micros=budget,
                )
                assert [c.passage.chunk_id for c in chosen] == [
                    c.passage.chunk_id for c in expected
                ], (query, top_k, budget)
                assert len(loader.loaded) <= len(ranking.items)
                if len(loader.loaded) > top_k:
                    reached_past_first_page = True
                if budget is None and len(ranking.items) >= top_k:
                    assert len(loader.loaded) == top_k  # an unbudgeted search reads one page
    assert reached_past_first_page  # the budgets above did exercise paging
