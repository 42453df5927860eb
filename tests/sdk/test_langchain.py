"""The LangChain retriever against a live server: paid passages as `Document`s, cited."""

from __future__ import annotations

import pytest
from langchain_core.documents import Document

from fairshare_sdk import AsyncFairshare, Fairshare
from fairshare_sdk.langchain import FairshareRetriever
from tests.sdk.conftest import DATASET, QUERY, Agent, Deployment

CITATION = {
    "dataset_id",
    "owner_id",
    "owner_name",
    "document_id",
    "title",
    "url",
    "char_start",
    "char_end",
    "licence_id",
    "attribution",
}


def check_documents(documents: list[Document], fairshare: Fairshare) -> None:
    """Each document is a passage this customer bought, with its citation, in receipt order."""
    (query_id,) = {d.metadata["query_id"] for d in documents}
    receipt = fairshare.receipt(query_id)
    assert [d.metadata["chunk_id"] for d in documents] == [h.chunk_id for h in receipt.claims.hits]
    assert sum(d.metadata["price_micros"] for d in documents) == receipt.claims.cost_micros
    for document in documents:
        assert set(document.metadata) == CITATION | {
            "chunk_id",
            "score",
            "price_micros",
            "currency",
            "query_id",
            "receipt",
        }
        assert document.metadata["receipt"] == receipt.jws
        bought = fairshare.chunk(document.metadata["chunk_id"])
        assert bought.text == document.page_content
        assert {k: document.metadata[k] for k in CITATION} == {
            k: getattr(bought.citation, k) for k in CITATION
        }
        assert document.metadata["dataset_id"] == DATASET


def test_retriever_returns_cited_documents(deployment: Deployment, agent: Agent) -> None:
    with Fairshare(agent.key, deployment.base_url) as fairshare:
        retriever = FairshareRetriever(client=fairshare, top_k=3, rerank=False)
        documents = retriever.invoke(QUERY)
        assert len(documents) == 3
        check_documents(documents, fairshare)


async def test_async_retriever_uses_the_async_client(deployment: Deployment, agent: Agent) -> None:
    async with AsyncFairshare(agent.key, deployment.base_url) as client:
        retriever = FairshareRetriever(async_client=client, top_k=2, datasets=[DATASET])
        documents = await retriever.ainvoke(QUERY)
        with pytest.raises(ValueError, match="async_client"):
            retriever.invoke(QUERY)  # no sync client to run it on
    assert len(documents) == 2
    with Fairshare(agent.key, deployment.base_url) as fairshare:
        check_documents(documents, fairshare)


async def test_async_retriever_with_only_a_sync_client(
    deployment: Deployment, agent: Agent
) -> None:
    with Fairshare(agent.key, deployment.base_url) as fairshare:
        documents = await FairshareRetriever(client=fairshare, top_k=2).ainvoke(QUERY)
        assert len(documents) == 2
        check_documents(documents, fairshare)


def test_retriever_needs_a_client() -> None:
    with pytest.raises(ValueError, match="client"):
        FairshareRetriever(top_k=2)
