"""FaissIndex picks exact or IVF by size; the approximate path keeps recall@10 ≥ 0.98 vs exact.

Uses a lowered `exact_threshold` so a 40k-vector dataset takes the path a million-vector one does
(it still probes only part of its lists: the scan budget is ~25k vectors). Vectors are clustered
(a small Gaussian mixture like bench/faiss_scale.py's), since random unit vectors have no
neighbourhood structure to get wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pytest
from numpy.typing import NDArray

from ranking.faiss_index import FaissIndex

DIM = 384
N = 40_000
THRESHOLD = 10_000  # so N is "large"
K = 10


@dataclass(frozen=True)
class Corpus:
    ids: list[str]
    vectors: NDArray[np.float32]
    queries: NDArray[np.float32]


def unit_rows(x: NDArray[np.float32]) -> NDArray[np.float32]:
    rows: NDArray[np.float32] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return rows


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    rng = np.random.default_rng(0)
    centres = unit_rows(rng.standard_normal((200, DIM), dtype=np.float32))
    # Each cluster also spreads along a few directions of its own, so a point's neighbours are not
    # all equidistant (as within an isotropic blob) and a weak search visibly misses some.
    bases = rng.standard_normal((200, 8, DIM), dtype=np.float32) / np.sqrt(DIM)

    def draw(n: int) -> NDArray[np.float32]:
        labels = rng.integers(0, len(centres), n)
        x = centres[labels] + rng.standard_normal((n, DIM), dtype=np.float32) * 0.7 / np.sqrt(DIM)
        coeffs = rng.standard_normal((n, 8), dtype=np.float32) * 1.5 / np.sqrt(8)
        for c in range(len(centres)):
            members = labels == c
            x[members] += coeffs[members] @ bases[c]
        return unit_rows(x)

    return Corpus(ids=[f"c{i:05d}" for i in range(N)], vectors=draw(N), queries=draw(200))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, corpus: Corpus) -> Path:
    """One approximate generation on disk, shared by the tests that only read it."""
    path = tmp_path_factory.mktemp("faiss")
    index = FaissIndex(path, DIM, exact_threshold=THRESHOLD)
    add(index, "big", 1, corpus.ids, corpus.vectors)
    index.close()
    return path


def add(
    index: FaissIndex,
    dataset: str,
    gen: int,
    ids: list[str],
    vectors: NDArray[np.float32],
    remove: list[str] | None = None,
) -> None:
    index.prepare(
        dataset,
        base_generation=gen - 1,
        generation=gen,
        add_ids=ids,
        add_vectors=vectors,
        remove_ids=remove or [],
    )
    index.finalize(dataset, generation=gen, remove_ids=remove or [])


def brute_force(
    ids: list[str], vectors: NDArray[np.float32], query: NDArray[np.float32], k: int
) -> list[tuple[str, float]]:
    scores = vectors @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return [(ids[i], float(scores[i])) for i in order]


def true_top_k(vectors: NDArray[np.float32], queries: NDArray[np.float32]) -> NDArray[np.intp]:
    """Rows of the exact top-K per query (order within the K not needed for recall)."""
    return np.argpartition(-(queries @ vectors.T), K, axis=1)[:, :K]


def recall(index: FaissIndex, corpus: Corpus, gens: dict[str, int], keep: set[str]) -> float:
    ids = [i for i in corpus.ids if i in keep]
    vectors = corpus.vectors[[i in keep for i in corpus.ids]]
    hits = 0
    for query, truth in zip(corpus.queries, true_top_k(vectors, corpus.queries), strict=True):
        found = {i for i, _ in index.search(query, K, gens)}
        hits += len(found & {ids[p] for p in truth})
    return hits / (K * len(corpus.queries))


def file_index(root: Path, dataset: str, gen: int) -> faiss.Index:
    return faiss.read_index(str(root / dataset / str(gen) / "index.faiss"))


def test_a_large_dataset_gets_ivf_with_recall_at_10_of_at_least_098(
    root: Path, corpus: Corpus
) -> None:
    assert isinstance(file_index(root, "big", 1), faiss.IndexIVFFlat)
    index = FaissIndex(root, DIM, exact_threshold=THRESHOLD)
    assert recall(index, corpus, {"big": 1}, set(corpus.ids)) >= 0.98
    # Scores are still exact cosines, best first.
    pairs = index.search(corpus.queries[0], K, {"big": 1})
    position = {chunk_id: i for i, chunk_id in enumerate(corpus.ids)}
    assert [s for _, s in pairs] == sorted((s for _, s in pairs), reverse=True)
    for chunk_id, score in pairs:
        expected = float(corpus.vectors[position[chunk_id]] @ corpus.queries[0])
        assert score == pytest.approx(expected, abs=1e-5)


def test_a_small_dataset_is_searched_exactly(tmp_path: Path, corpus: Corpus) -> None:
    index = FaissIndex(tmp_path, DIM, exact_threshold=THRESHOLD)
    ids, vectors = corpus.ids[:5_000], corpus.vectors[:5_000]
    add(index, "small", 1, ids, vectors)
    assert isinstance(file_index(tmp_path, "small", 1), faiss.IndexFlatIP)
    for query in corpus.queries[:50]:
        found = index.search(query, K, {"small": 1})
        expected = brute_force(ids, vectors, query, K)
        assert [i for i, _ in found] == [i for i, _ in expected]
        assert [s for _, s in found] == pytest.approx([s for _, s in expected], abs=1e-5)


def test_a_reloaded_generation_searches_with_this_codes_nprobe(
    root: Path, corpus: Corpus, tmp_path: Path
) -> None:
    # A file written with a weaker nprobe (as by code with older constants) ...
    weak = file_index(root, "big", 1)
    assert isinstance(weak, faiss.IndexIVFFlat)
    weak.nprobe = 1
    copy = tmp_path / "big" / "1"
    copy.mkdir(parents=True)
    for name in ("ids.json", "vectors.npy"):
        (copy / name).write_bytes((root / "big" / "1" / name).read_bytes())
    faiss.write_index(weak, str(copy / "index.faiss"))
    raw = faiss.read_index(str(copy / "index.faiss")).search(corpus.queries, K)[1]
    truth = true_top_k(corpus.vectors, corpus.queries)
    raw_hits = sum(len(set(f) & set(t)) for f, t in zip(raw.tolist(), truth.tolist(), strict=True))
    assert raw_hits / truth.size < 0.98  # so this test would catch a search using the file's value
    # ... is searched by a fresh FaissIndex with this code's nprobe, as loaded from disk.
    index = FaissIndex(tmp_path, DIM, exact_threshold=THRESHOLD)
    assert recall(index, corpus, {"big": 1}, set(corpus.ids)) >= 0.98


def test_removal_rebuilds_the_approximate_index_without_the_removed_chunks(
    root: Path, corpus: Corpus, tmp_path: Path
) -> None:
    dataset = tmp_path / "big"
    dataset.mkdir()
    (dataset / "1").mkdir()
    for name in ("ids.json", "vectors.npy", "index.faiss"):
        (dataset / "1" / name).write_bytes((root / "big" / "1" / name).read_bytes())
    index = FaissIndex(tmp_path, DIM, exact_threshold=THRESHOLD)
    # Remove every query's current best hit, plus a block, so removals are visible in results.
    best = {index.search(q, 1, {"big": 1})[0][0] for q in corpus.queries}
    removed = best | set(corpus.ids[:2_000])
    index.prepare(
        "big",
        base_generation=1,
        generation=2,
        add_ids=[],
        add_vectors=np.zeros((0, DIM), dtype=np.float32),
        remove_ids=sorted(removed),
    )
    index.finalize("big", generation=2, remove_ids=sorted(removed))
    kept = set(corpus.ids) - removed
    assert index.chunk_ids("big", 2) == kept
    assert isinstance(file_index(tmp_path, "big", 2), faiss.IndexIVFFlat)
    for query in corpus.queries:
        assert not {i for i, _ in index.search(query, K, {"big": 2})} & removed
    assert recall(index, corpus, {"big": 2}, kept) >= 0.98


def test_k_beyond_the_dataset_returns_every_chunk_best_first(
    tmp_path: Path, corpus: Corpus
) -> None:
    index = FaissIndex(tmp_path, DIM, exact_threshold=10)
    ids, vectors = corpus.ids[:50], corpus.vectors[:50]
    add(index, "tiny", 1, ids, vectors)
    assert isinstance(file_index(tmp_path, "tiny", 1), faiss.IndexIVFFlat)
    found = index.search(corpus.queries[0], 100, {"tiny": 1})
    expected = brute_force(ids, vectors, corpus.queries[0], 100)
    assert [i for i, _ in found] == [i for i, _ in expected]
