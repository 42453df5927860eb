"""The search pipeline on real indexes: language-aware fusion and per-language BM25."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest_asyncio

from contracts import Licence, Owner
from ingest.run import ingest_source
from ranking.embedder import SentenceEmbedder
from ranking.pipeline import SearchPipeline
from service.runtime import Runtime, open_runtime
from tests.conftest import make_settings

LICENCE = Licence(
    id="l",
    name="l",
    currency="USD",
    price_per_hit_micros=1,
    owner_share_bps=5000,
    snippet_cap_chars=500,
    attribution="a",
)
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
