"""The `languages` filter on real indexes: dense and BM25 candidates alike, over a dataset whose
documents are in three languages, and the query language reported beside the ranking."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence

import pytest
import pytest_asyncio

from contracts import Owner
from ranking.embedder import Embedder
from ranking.pipeline import Mode, Ranking, SearchPipeline
from service.runtime import Runtime, open_runtime
from tests.conftest import PLAIN_LICENCE as LICENCE
from tests.conftest import make_settings

# One dataset, three languages with four documents each (no language is rare enough to be
# relabelled as the majority's), and one document with no detectable language.
DOCUMENTS = {
    "en-berlin": "Berlin is the capital of Germany and has about 3.7 million inhabitants.",
    "en-rhine": "The Rhine flows from the Swiss Alps to the North Sea through Germany.",
    "en-alps": "The Alps are the highest mountain range in Europe, shared by eight countries.",
    "en-beer": "Munich hosts the Oktoberfest, a large beer festival, every autumn.",
    "de-berlin": "Berlin ist die Hauptstadt Deutschlands und hat etwa 3,7 Millionen Einwohner.",
    "de-rhein": "Der Rhein fließt von den Schweizer Alpen durch Deutschland bis zur Nordsee.",
    "de-alpen": "Die Alpen sind das höchste Gebirge Europas und liegen in mehreren Ländern.",
    "de-bier": "München veranstaltet jeden Herbst das Oktoberfest, ein großes Bierfest.",
    "fr-paris": "Paris est la capitale de la France et compte environ deux millions d'habitants.",
    "fr-loire": "La Loire est le plus long fleuve de France et se jette dans l'océan Atlantique.",
    "fr-alpes": "Les Alpes sont la plus haute chaîne de montagnes d'Europe occidentale.",
    "fr-vin": "La Bourgogne produit des vins célèbres depuis le Moyen Âge.",
    "und-sku": "4711-B · 12345 · 67890 · 2026-03",
}
DATASET = "mixed"


async def no_texts(ids: Sequence[str]) -> dict[str, str]:
    return {}


@pytest_asyncio.fixture(scope="module")
async def runtime(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> AsyncIterator[Runtime]:
    root = tmp_path_factory.mktemp("language-filter")
    async with open_runtime(make_settings(root / "data"), with_reranker=False) as rt:
        await rt.catalog.add_owner(Owner(id="o", name="O"))
        await rt.catalog.add_dataset(
            dataset_id=DATASET, owner_id="o", name=DATASET, description="", licence=LICENCE
        )
        source = root / "mixed.jsonl"
        source.write_text(
            "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in DOCUMENTS.items())
        )
        report = await rt.ingest(source, DATASET, progress=False)
        assert not report.errors and report.added == len(DOCUMENTS)
        yield rt


async def search(
    pipeline: SearchPipeline,
    rt: Runtime,
    query: str,
    mode: Mode = "hybrid",
    languages: set[str] | None = None,
) -> tuple[Ranking, list[str]]:
    """The ranking and the document ids it ranks, in order."""
    generations = {DATASET: (await rt.catalog.generations())[DATASET]}
    ranking = await pipeline.search(
        query, generations=generations, rerank=False, texts=no_texts, mode=mode,
        languages=languages,
    )  # fmt: skip
    passages = await rt.catalog.get_passages([r.chunk_id for r in ranking.items])
    return ranking, [passages[r.chunk_id].document_id for r in ranking.items]


def language(document_id: str) -> str:
    return document_id.split("-")[0]


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
async def test_only_chunks_in_the_asked_languages_come_back(runtime: Runtime, mode: Mode) -> None:
    _, everything = await search(runtime.pipeline, runtime, "Alps Alpen Alpes", mode)
    assert {language(d) for d in everything} >= {"en", "de", "fr"}
    _, german = await search(runtime.pipeline, runtime, "Alps Alpen Alpes", mode, {"de"})
    assert german and {language(d) for d in german} == {"de"}
    _, two = await search(runtime.pipeline, runtime, "Alps Alpen Alpes", mode, {"de", "fr"})
    assert {language(d) for d in two} == {"de", "fr"}


async def test_the_best_chunk_in_the_language_asked_for_comes_first(runtime: Runtime) -> None:
    _, ranked = await search(runtime.pipeline, runtime, "capital city population", "hybrid", {"fr"})
    assert ranked[0] == "fr-paris"


async def test_dense_search_goes_deeper_so_the_filter_leaves_candidates(runtime: Runtime) -> None:
    # Two candidates per retriever: an English query's two nearest chunks are not French, so a
    # filter applied after the cut would leave nothing.
    shallow = SearchPipeline(
        runtime.embedder, runtime.faiss, runtime.lexical, None, candidate_depth=2
    )
    query = "Munich beer festival in autumn"
    _, nearest = await search(shallow, runtime, query, "dense")
    assert not any(language(d) == "fr" for d in nearest)
    _, french = await search(shallow, runtime, query, "dense", {"fr"})
    assert len(french) == 2 and {language(d) for d in french} == {"fr"}
    # The deeper search still returns the nearest French chunks, in order.
    _, all_french = await search(runtime.pipeline, runtime, query, "dense", {"fr"})
    assert french == all_french[:2]


async def test_text_with_no_detectable_language_is_und_and_searchable(runtime: Runtime) -> None:
    _, found = await search(runtime.pipeline, runtime, "4711-B", "hybrid")
    assert found[0] == "und-sku"
    _, only = await search(runtime.pipeline, runtime, "4711-B", "hybrid", {"und"})
    assert only == ["und-sku"]


async def test_a_language_the_datasets_do_not_hold_finds_nothing(runtime: Runtime) -> None:
    ranking, found = await search(runtime.pipeline, runtime, "Alpen", "hybrid", {"ja"})
    assert found == [] and ranking.items == []


async def test_the_query_language_is_reported(runtime: Runtime) -> None:
    german, _ = await search(runtime.pipeline, runtime, "Wie viele Einwohner hat Berlin?")
    assert german.query_language == "de"
    unsure, _ = await search(runtime.pipeline, runtime, "4711-B")
    assert unsure.query_language == "und"


async def test_the_embedder_votes_on_foreign_chunks_when_it_reads_the_query(
    runtime: Runtime,
) -> None:
    # An English question about German sentences: BM25 finds no shared word, and the English
    # embedder's ranking is all there is. Before the query's language counted, every German
    # chunk scored 0 here and came back in id order.
    query = "Which river flows into the North Sea?"
    lexical, _ = await search(runtime.pipeline, runtime, query, "bm25", {"de"})
    assert lexical.items == []
    hybrid, ranked = await search(runtime.pipeline, runtime, query, "hybrid", {"de"})
    _, dense = await search(runtime.pipeline, runtime, query, "dense", {"de"})
    assert hybrid.query_language == "en"
    assert ranked == dense and ranked[0] == "de-rhein"
    assert all(item.score > 0 for item in hybrid.items)


async def test_text_of_no_language_gets_no_dense_vote_from_any_query(runtime: Runtime) -> None:
    # The number-only chunk sits in every dense list; an English query must not lift it.
    query = "Where is the famous beer festival held every autumn?"
    _, dense = await search(runtime.pipeline, runtime, query, "dense")
    assert "und-sku" in dense
    hybrid, ranked = await search(runtime.pipeline, runtime, query, "hybrid")
    assert hybrid.query_language == "en"
    assert hybrid.items[ranked.index("und-sku")].score == 0.0
