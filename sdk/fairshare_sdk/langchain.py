"""A LangChain retriever over Fairshare search (`pip install 'fairshare-sdk[langchain]'`).

    retriever = FairshareRetriever(client=Fairshare(), top_k=4)
    documents = retriever.invoke("antibiotics for community-acquired pneumonia")

Each `Document` is one paid passage: `page_content` is its text, `metadata` its citation (show
`metadata["attribution"]` with it) plus `chunk_id`, `score`, `price_micros`, `currency`,
`query_id` and the search's signed `receipt`. Every invocation is a charged search.
"""

from __future__ import annotations

from typing import Any

import msgspec
from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from pydantic import model_validator

from contracts import SearchResponse
from contracts.catalog import Use
from fairshare_sdk._calls import SearchOptions
from fairshare_sdk._client import AsyncFairshare, Fairshare


class FairshareRetriever(BaseRetriever):
    """Documents from `client.search` (or `async_client.search` when awaited; without one,
    the sync client runs in an executor). The search options apply to every query."""

    client: Fairshare | None = None
    async_client: AsyncFairshare | None = None
    top_k: int = 5
    datasets: list[str] | None = None
    max_cost_micros: int | None = None
    rerank: bool | None = None
    intended_use: Use | None = None
    languages: list[str] | None = None

    @model_validator(mode="after")
    def _has_a_client(self) -> FairshareRetriever:
        if self.client is None and self.async_client is None:
            raise ValueError("FairshareRetriever needs client= or async_client=")
        return self

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        if self.client is None:
            raise ValueError("this FairshareRetriever has only an async_client: use ainvoke()")
        return documents(self.client.search(query, **self._options()))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        if self.async_client is None:
            sync_manager = run_manager.get_sync()
            return await run_in_executor(
                None, self._get_relevant_documents, query, run_manager=sync_manager
            )
        return documents(await self.async_client.search(query, **self._options()))

    def _options(self) -> SearchOptions:
        return SearchOptions(
            top_k=self.top_k,
            datasets=self.datasets,
            max_cost_micros=self.max_cost_micros,
            rerank=self.rerank,
            intended_use=self.intended_use,
            languages=self.languages,
        )


def documents(response: SearchResponse) -> list[Document]:
    """One `Document` per result, in rank order, its citation flattened into `metadata`."""
    shared: dict[str, Any] = {
        "query_id": response.query_id,
        "currency": response.currency,
        "receipt": response.receipt,
    }
    return [
        Document(
            page_content=result.text,
            metadata={
                **msgspec.structs.asdict(result.citation),
                "chunk_id": result.chunk_id,
                "score": result.score,
                "price_micros": result.price_micros,
                **shared,
            },
        )
        for result in response.results
    ]
