"""One conformance suite for every VectorIndex: FAISS and Qdrant local mode, real embeddings."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ranking.embedder import SentenceEmbedder
from ranking.faiss_index import FaissIndex
from ranking.qdrant_index import QdrantIndex, local_storage_file, open_qdrant
from ranking.vectors import VectorIndex

TEXTS = {
    "pneumonia": "Empirical antibiotics for community-acquired pneumonia in adults",
    "sepsis": "Fluid resuscitation with crystalloids in septic shock",
    "possession": "Adverse possession requires open, notorious and continuous occupation",
    "copper": "Copper prices jumped after a mine strike cut global supply",
    "chips": "The chipmaker beat earnings estimates on data-centre demand",
}
IDS = {name: uuid.uuid5(uuid.NAMESPACE_URL, name).hex for name in TEXTS}
NAMES = {v: k for k, v in IDS.items()}


@pytest.fixture(params=["faiss", "qdrant"])
def index(
    request: pytest.FixtureRequest, tmp_path: Path, embedder: SentenceEmbedder
) -> Iterator[VectorIndex]:
    if request.param == "faiss":
        built: VectorIndex = FaissIndex(tmp_path / "faiss", embedder.dim)
    else:
        built = _local_qdrant(tmp_path / "qdrant", embedder.dim)
    yield built
    built.close()


def _local_qdrant(path: Path, dim: int) -> QdrantIndex:
    """Local mode as `fairshare serve` opens it."""
    return QdrantIndex(open_qdrant(url=None, path=path), dim, local_path=path)


def _add(
    index: VectorIndex,
    embedder: SentenceEmbedder,
    dataset: str,
    names: list[str],
    gen: int,
    remove: list[str] | None = None,
) -> None:
    vectors = embedder.embed_passages([TEXTS[n] for n in names])
    index.prepare(
        dataset,
        base_generation=gen - 1,
        generation=gen,
        add_ids=[IDS[n] for n in names],
        add_vectors=vectors,
        remove_ids=[IDS[n] for n in remove or []],
    )
    index.finalize(dataset, generation=gen, remove_ids=[IDS[n] for n in remove or []])


def _search(
    index: VectorIndex, embedder: SentenceEmbedder, query: str, gens: dict[str, int], k: int = 3
) -> list[str]:
    return [NAMES[i] for i, _ in index.search(embedder.embed_queries([query])[0], k, gens)]


def test_nearest_passage_comes_first(index: VectorIndex, embedder: SentenceEmbedder) -> None:
    _add(index, embedder, "med", ["pneumonia", "sepsis"], 1)
    _add(index, embedder, "law", ["possession"], 1)
    _add(index, embedder, "mkt", ["copper", "chips"], 1)
    gens = {"med": 1, "law": 1, "mkt": 1}
    assert _search(index, embedder, "which antibiotic for pneumonia", gens)[0] == "pneumonia"
    assert _search(index, embedder, "squatter gains title to land", gens)[0] == "possession"
    assert _search(index, embedder, "metal supply disruption", gens)[0] == "copper"


def test_search_reads_only_the_datasets_it_is_given(
    index: VectorIndex, embedder: SentenceEmbedder
) -> None:
    _add(index, embedder, "med", ["pneumonia", "sepsis"], 1)
    _add(index, embedder, "mkt", ["copper", "chips"], 1)
    found = _search(index, embedder, "antibiotics for pneumonia", {"mkt": 1}, k=10)
    assert set(found) == {"copper", "chips"}
    assert _search(index, embedder, "anything", {}, k=10) == []


def test_scores_are_cosine_and_sorted(index: VectorIndex, embedder: SentenceEmbedder) -> None:
    _add(index, embedder, "med", ["pneumonia", "sepsis", "copper"], 1)
    query = embedder.embed_queries(["pneumonia antibiotics"])[0]
    pairs = index.search(query, 3, {"med": 1})
    scores = [s for _, s in pairs]
    assert scores == sorted(scores, reverse=True)
    expected = float(np.dot(query, embedder.embed_passages([TEXTS["pneumonia"]])[0]))
    assert scores[0] == pytest.approx(expected, abs=1e-4)


def test_removed_chunks_disappear_after_the_next_generation(
    index: VectorIndex, embedder: SentenceEmbedder
) -> None:
    _add(index, embedder, "med", ["pneumonia", "sepsis"], 1)
    _add(index, embedder, "med", ["chips"], 2, remove=["pneumonia"])
    assert index.chunk_ids("med", 2) == {IDS["sepsis"], IDS["chips"]}
    assert "pneumonia" not in _search(index, embedder, "pneumonia antibiotics", {"med": 2}, k=10)


def test_dropping_a_dataset_removes_and_counts_every_vector_of_it(
    index: VectorIndex, embedder: SentenceEmbedder
) -> None:
    _add(index, embedder, "med", ["pneumonia", "sepsis"], 1)
    _add(index, embedder, "med", ["chips"], 2)
    _add(index, embedder, "mkt", ["copper"], 1)
    # Searched first: FAISS holds generation 2 in memory, which must go with the files.
    assert _search(index, embedder, "pneumonia", {"med": 2, "mkt": 1}, k=10)[0] == "pneumonia"
    removed = index.drop("med")
    assert removed.items == 3
    assert (removed.files > 0) == isinstance(index, FaissIndex)  # Qdrant holds no files of ours
    assert index.chunk_ids("med", 1) == index.chunk_ids("med", 2) == set()
    # Even a caller still naming the dropped dataset's generation finds nothing of it.
    assert _search(index, embedder, "pneumonia", {"med": 2, "mkt": 1}, k=10) == ["copper"]
    assert index.drop("med").items == 0
    assert index.chunk_ids("mkt", 1) == {IDS["copper"]}


def test_qdrant_local_storage_is_write_ahead_logged_and_keeps_every_point(
    tmp_path: Path, embedder: SentenceEmbedder
) -> None:
    path = tmp_path / "qdrant"
    index = _local_qdrant(path, embedder.dim)
    _add(index, embedder, "med", ["pneumonia", "sepsis"], 1)
    _add(index, embedder, "mkt", ["copper"], 1)
    index.close()
    # The switch goes by qdrant-client's file layout; an upgrade that moves the file must not
    # quietly bring back a rollback journal (three times slower ingest).
    storage = local_storage_file(path, "chunks")
    connection = sqlite3.connect(storage)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        connection.close()
    reopened = _local_qdrant(path, embedder.dim)
    try:
        assert reopened.chunk_ids("med", 1) == {IDS["pneumonia"], IDS["sepsis"]}
        assert _search(reopened, embedder, "metal supply disruption", {"med": 1, "mkt": 1})[0] == (
            "copper"
        )
    finally:
        reopened.close()


def test_faiss_and_qdrant_agree(tmp_path: Path, embedder: SentenceEmbedder) -> None:
    faiss_index = FaissIndex(tmp_path / "f", embedder.dim)
    qdrant_index = QdrantIndex(open_qdrant(url=None, path=tmp_path / "q"), embedder.dim)
    try:
        for idx in (faiss_index, qdrant_index):
            _add(idx, embedder, "all", list(TEXTS), 1)
        for query in ["pneumonia", "land ownership dispute", "semiconductor earnings", "shock"]:
            vector = embedder.embed_queries([query])[0]
            f = faiss_index.search(vector, 5, {"all": 1})
            q = qdrant_index.search(vector, 5, {"all": 1})
            assert [i for i, _ in f] == [i for i, _ in q]
            assert [s for _, s in f] == pytest.approx([s for _, s in q], abs=1e-4)
    finally:
        qdrant_index.close()


def test_faiss_keeps_serving_the_old_generation_until_told_otherwise(
    tmp_path: Path, embedder: SentenceEmbedder
) -> None:
    index = FaissIndex(tmp_path / "faiss", embedder.dim)
    _add(index, embedder, "med", ["pneumonia"], 1)
    assert _search(index, embedder, "pneumonia", {"med": 1}) == ["pneumonia"]
    vectors = embedder.embed_passages([TEXTS["sepsis"]])
    index.prepare(
        "med",
        base_generation=1,
        generation=2,
        add_ids=[IDS["sepsis"]],
        add_vectors=vectors,
        remove_ids=[IDS["pneumonia"]],
    )
    # Not yet committed: a reader pinned to generation 1 still sees exactly generation 1.
    assert _search(index, embedder, "pneumonia", {"med": 1}, k=5) == ["pneumonia"]
    assert _search(index, embedder, "pneumonia", {"med": 2}, k=5) == ["sepsis"]
