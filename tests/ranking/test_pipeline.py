"""The search pipeline on real indexes: language-aware fusion, per-language BM25, batching."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import pytest_asyncio

from contracts import Owner
from ingest.run import ingest_source
from ranking.embedder import SentenceEmbedder
from ranking.pipeline import SearchPipeline
from ranking.rerank import CrossEncoderReranker, PairScorer, load_reranker
from service.runtime import Runtime, open_runtime
from tests.conftest import PLAIN_LICENCE as LICENCE
from tests.conftest import make_settings
from tests.ranking.counting import CountingEmbedder, CountingScorer

ENGLISH = [
    ("berlin", "Berlin is the capital of Germany and has about 3.7 million inhabitants."),
    ("rhine", "The Rhine flows from the Swiss Alps to the North Sea through Germany."),
    ("alps", "The Alps are the highest mountain range in Europe."),
    ("beer", "Munich hosts the Oktoberfest, a large beer festival, every autumn."),
]
GERMAN = [
    ("berlin", "Berlin ist die Hauptstadt Deutschlands und hat etwa 3,7 Millionen Einwohner."),
    ("rhein", "Der Rhein fließt von den Schweizer Alpen durch Deutschland bis zur Nordsee."),
    ("alpen", "Die Alpen sind das höchste Gebirge Europas und liegen in mehreren Ländern."),
    ("bier", "München veranstaltet jeden Herbst das Oktoberfest, ein großes Bierfest."),
    ("auto", "Deutsche Autohersteller exportieren Fahrzeuge in die ganze Welt."),
]


async def no_texts(ids: Sequence[str]) -> dict[str, str]:
    return {}


@pytest_asyncio.fixture(scope="module")
async def runtime(tmp_path_factory: object, embedder: SentenceEmbedder) -> AsyncIterator[Runtime]:
    root: Path = tmp_path_factory.mktemp("pipeline")  # type: ignore[attr-defined]
    async with open_runtime(make_settings(root / "data"), with_reranker=False) as rt:
        await rt.catalog.add_owner(Owner(id="o", name="O"))
        for dataset, docs in (("en-docs", ENGLISH), ("de-docs", GERMAN)):
            await rt.catalog.add_dataset(
                dataset_id=dataset, owner_id="o", name=dataset, description="", licence=LICENCE
            )
            source = root / f"{dataset}.jsonl"
            source.write_text(
                "".join(json.dumps({"id": i, "title": "", "text": t}) + "\n" for i, t in docs)
            )
            await ingest_source(
                source,
                dataset_id=dataset,
                catalog=rt.catalog,
                embedder=rt.embedder,
                vector_indexes=rt.vector_indexes(),
                lexical=rt.lexical,
                lock_dir=rt.lock_dir,
                progress=False,
            )
        yield rt


async def ranked(
    pipeline: SearchPipeline, rt: Runtime, query: str, dataset: str, mode: str
) -> list[str]:
    gens = {dataset: (await rt.catalog.generations())[dataset]}
    ranking = await pipeline.search(
        query, generations=gens, rerank=False, texts=no_texts, mode=mode
    )  # type: ignore[arg-type]
    return [r.chunk_id for r in ranking.items]


async def test_documents_get_their_detected_language(runtime: Runtime) -> None:
    languages = {c.language for c in await runtime.catalog.chunk_texts("de-docs")}
    assert languages == {"de"}
    assert {c.language for c in await runtime.catalog.chunk_texts("en-docs")} == {"en"}


async def test_german_bm25_is_stemmed_german(runtime: Runtime) -> None:
    # "Einwohnern" only matches "Einwohner" through the German stemmer.
    top = (await ranked(runtime.pipeline, runtime, "Wie viele Einwohnern", "de-docs", "bm25"))[0]
    passages = await runtime.catalog.get_passages([top])
    assert passages[top].document_id == "berlin"


async def test_an_english_only_embedder_gets_no_vote_on_german_chunks(runtime: Runtime) -> None:
    query = "Welcher Fluss fließt in die Nordsee?"
    lexical = await ranked(runtime.pipeline, runtime, query, "de-docs", "bm25")
    gens = {"de-docs": (await runtime.catalog.generations())["de-docs"]}
    english_only = await runtime.pipeline.search(
        query, generations=gens, rerank=False, texts=no_texts
    )
    # BM25's order is kept exactly, and candidates only the embedder found trail all of them.
    assert [r.chunk_id for r in english_only.items if r.chunk_id in lexical] == lexical
    floor = min(r.score for r in english_only.items if r.chunk_id in lexical)
    dense_only = [r for r in english_only.items if r.chunk_id not in lexical]
    assert dense_only and all(r.score <= floor for r in dense_only)
    # Told the embedder reads German (a multilingual model), fusion lets it vote.
    multilingual = SearchPipeline(
        runtime.embedder, runtime.faiss, runtime.lexical, None, embedder_languages=None
    )
    voted = await multilingual.search(query, generations=gens, rerank=False, texts=no_texts)
    assert any(r.score > floor for r in voted.items if r.chunk_id not in lexical)


async def test_lexical_only_foreign_candidates_get_no_dense_floor(runtime: Runtime) -> None:
    # With shallow lists the two retrievers return different chunks; a German chunk only BM25
    # found must not be lifted by the dense list's floor score above BM25's own order.
    shallow = SearchPipeline(
        runtime.embedder, runtime.faiss, runtime.lexical, None, candidate_depth=2
    )
    query = "Welcher Fluss fließt in die Nordsee?"
    lexical = await ranked(shallow, runtime, query, "de-docs", "bm25")
    hybrid = await ranked(shallow, runtime, query, "de-docs", "hybrid")
    assert [c for c in hybrid if c in lexical] == lexical
    assert hybrid[0] == lexical[0]


async def test_english_hybrid_uses_both_retrievers(runtime: Runtime) -> None:
    query = "How many people live in the German capital?"
    dense = await ranked(runtime.pipeline, runtime, query, "en-docs", "dense")
    hybrid = await ranked(runtime.pipeline, runtime, query, "en-docs", "hybrid")
    assert hybrid[0] == dense[0]
    assert set(dense) <= set(hybrid)


CONCURRENT_QUERIES = [
    "How many people live in the German capital?",
    "Which river reaches the North Sea?",
    "highest mountains in Europe",
    "autumn beer festival in Munich",
    "Where does the Rhine start?",
    "population of Berlin",
    "Swiss Alps",
    "Oktoberfest",
]


@pytest.fixture(scope="module")
def cross_encoder(test_reranker_path: Path) -> PairScorer:
    status = load_reranker(str(test_reranker_path))
    assert isinstance(status.reranker, CrossEncoderReranker), status.detail
    return status.reranker.scorer


def counting_pipeline(
    runtime: Runtime, cross_encoder: PairScorer | None = None
) -> tuple[SearchPipeline, CountingEmbedder, CountingScorer | None]:
    embedder = CountingEmbedder(runtime.embedder)
    scorer = CountingScorer(cross_encoder) if cross_encoder is not None else None
    reranker = CrossEncoderReranker("test", "torch", scorer) if scorer is not None else None
    pipeline = SearchPipeline(embedder, runtime.faiss, runtime.lexical, reranker)
    return pipeline, embedder, scorer


async def test_concurrent_searches_share_forward_passes_and_match_lone_results(
    runtime: Runtime, cross_encoder: PairScorer
) -> None:
    gens = {"en-docs": (await runtime.catalog.generations())["en-docs"]}

    async def texts(ids: Sequence[str]) -> dict[str, str]:
        passages = await runtime.catalog.get_passages(ids)
        return {cid: f"{p.title}\n{p.text}" for cid, p in passages.items()}

    async def search(pipeline: SearchPipeline, query: str) -> dict[str, float]:
        ranking = await pipeline.search(query, generations=gens, rerank=True, texts=texts)
        assert ranking.reranked
        return {r.chunk_id: r.score for r in ranking.items}

    alone, alone_embedder, alone_scorer = counting_pipeline(runtime, cross_encoder)
    expected = [await search(alone, q) for q in CONCURRENT_QUERIES]
    # One at a time, nothing is batched (and nothing waited for company).
    assert alone_embedder.calls == [1] * 8
    assert alone_scorer is not None and len(alone_scorer.calls) == 8

    together, embedder, scorer = counting_pipeline(runtime, cross_encoder)
    results = await asyncio.gather(*(search(together, q) for q in CONCURRENT_QUERIES))
    assert sum(embedder.calls) == 8 and len(embedder.calls) < 8
    assert together.embed_batcher.batches == len(embedder.calls)
    assert scorer is not None and sum(scorer.calls) == sum(alone_scorer.calls)
    assert len(scorer.calls) < 8
    # Each search gets what it gets alone: same candidates, same scores (batch padding may move
    # the last float bits, never more).
    for got, want in zip(results, expected, strict=True):
        assert list(got) == list(want)
        assert got == pytest.approx(want, abs=1e-5)


async def test_a_repeated_query_is_embedded_once(runtime: Runtime) -> None:
    pipeline, embedder, _ = counting_pipeline(runtime)
    gens = {"en-docs": (await runtime.catalog.generations())["en-docs"]}
    first = await pipeline.search("Swiss  Alps", generations=gens, rerank=False, texts=no_texts)
    # The same query up to whitespace is the same key: answered without the model.
    again = await pipeline.search(" Swiss Alps\n", generations=gens, rerank=False, texts=no_texts)
    assert embedder.calls == [1]
    assert again.items == first.items
    assert (pipeline.query_vectors.hits, pipeline.query_vectors.misses) == (1, 1)
    # Concurrent duplicates in one batch are embedded once too.
    await asyncio.gather(
        *(
            pipeline.search("Rhine", generations=gens, rerank=False, texts=no_texts)
            for _ in range(3)
        )
    )
    assert sum(embedder.calls) == 2
