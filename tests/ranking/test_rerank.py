"""The cross-encoder backends and the score cache, with the real test cross-encoder.

The model is the packaged MiniLM encoder with a fresh, seeded head (tests/conftest.py), so these
tests prove that each backend loads and computes the same function as the torch reference, and
that the cache saves model work; they say nothing about ranking quality.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ingest.chunking import OVERLAP_TOKENS, WINDOW_TOKENS
from ranking.rerank import (
    BACKENDS,
    RERANK_MAX_LENGTH,
    CrossEncoderReranker,
    RerankerStatus,
    load_reranker,
)
from ranking.rerank_cache import ScoreCache, normalise_query
from ranking.rerank_onnx import (
    OnnxUnavailable,
    export_directory,
    is_current,
    quantization_target,
)
from tests.ranking.counting import CountingScorer

QUERY = "anticoagulation for atrial fibrillation"
CANDIDATES = [
    (
        "c-afib",
        "Atrial fibrillation\nOral anticoagulants reduce the risk of stroke in patients with "
        "atrial fibrillation; warfarin and direct oral anticoagulants are both used.",
    ),
    (
        "c-sepsis",
        "Septic shock\nEarly fluid resuscitation and vasopressors are the mainstay of treatment "
        "for septic shock in adults.",
    ),
    (
        "c-land",
        "Adverse possession\nA squatter may acquire title to land after open, continuous and "
        "hostile possession for the statutory period.",
    ),
    (
        "c-copper",
        "Copper markets\nSupply disruptions at two large mines pushed copper prices to a "
        "three-year high.",
    ),
    (
        "c-bleed",
        "Bleeding risk\nThe HAS-BLED score estimates major bleeding risk for patients starting "
        "anticoagulation.",
    ),
    (
        "c-chip",
        "Semiconductors\nThe chipmaker raised its earnings guidance on strong data-centre demand.",
    ),
]


# Real passages for the agreement tests: with a random head the scores sit close together, so
# rank agreement is only meaningful over more than a handful of pairs.
DEMO_CLINICAL = Path(__file__).parents[2] / "demo" / "clinical" / "documents.jsonl"


@pytest.fixture(scope="module")
def demo_pairs() -> list[tuple[str, str]]:
    with DEMO_CLINICAL.open() as handle:
        documents = [json.loads(line) for line in handle][:40]
    return [(QUERY, f"{d['title']}\n{d['text']}") for d in documents]


@pytest.fixture(scope="module")
def loaded(
    test_reranker_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, RerankerStatus]:
    """Every backend loaded once: the ONNX export and its quantization happen here, once."""
    cache_dir = tmp_path_factory.mktemp("reranker-onnx")
    return {
        backend: load_reranker(str(test_reranker_path), backend=backend, cache_dir=cache_dir)
        for backend in BACKENDS
    }


def _reranker(status: RerankerStatus) -> CrossEncoderReranker:
    assert status.loaded, status.detail
    assert isinstance(status.reranker, CrossEncoderReranker)
    return status.reranker


def _fresh_scores(status: RerankerStatus, pairs: list[tuple[str, str]]) -> np.ndarray:
    """Scores straight from the backend, bypassing the loaded reranker's cache."""
    return np.array(_reranker(status).scorer.score_pairs(pairs))


@pytest.fixture(scope="module")
def torch_demo_scores(
    loaded: dict[str, RerankerStatus], demo_pairs: list[tuple[str, str]]
) -> np.ndarray:
    return _fresh_scores(loaded["torch"], demo_pairs)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks_a, ranks_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_loads_and_scores(loaded: dict[str, RerankerStatus], backend: str) -> None:
    status = loaded[backend]
    reranker = _reranker(status)
    assert f"backend {backend}" in status.detail and reranker.backend == backend
    scores = reranker.score(QUERY, CANDIDATES)
    assert len(scores) == len(CANDIDATES)
    assert all(math.isfinite(s) for s in scores)
    assert len(set(scores)) > 1  # the model reads the passages, not a constant


def test_onnx_scores_match_torch(
    loaded: dict[str, RerankerStatus],
    demo_pairs: list[tuple[str, str]],
    torch_demo_scores: np.ndarray,
) -> None:
    torch_scores = torch_demo_scores
    onnx_scores = _fresh_scores(loaded["onnx"], demo_pairs)
    assert np.abs(onnx_scores - torch_scores).max() < 1e-4
    assert list(np.argsort(-onnx_scores)) == list(np.argsort(-torch_scores))


def test_onnx_int8_ordering_tracks_torch(
    loaded: dict[str, RerankerStatus],
    demo_pairs: list[tuple[str, str]],
    torch_demo_scores: np.ndarray,
) -> None:
    torch_scores = torch_demo_scores
    int8_scores = _fresh_scores(loaded["onnx-int8"], demo_pairs)
    # Measured here: max difference 0.0012, Spearman 0.97 over these 40 pairs (avx512_vnni).
    assert np.abs(int8_scores - torch_scores).max() < 0.01
    assert _spearman(int8_scores, torch_scores) >= 0.9


def test_onnx_export_is_made_once_and_reused(
    loaded: dict[str, RerankerStatus], test_reranker_path: Path
) -> None:
    exported = test_reranker_path / "onnx" / "model.onnx"
    assert str(exported) in loaded["onnx"].detail
    assert (
        "model_qint8_" in loaded["onnx-int8"].detail
        or "model_quint8_" in loaded["onnx-int8"].detail
    )
    before = exported.stat().st_mtime_ns
    again = load_reranker(str(test_reranker_path), backend="onnx")
    assert again.loaded and str(exported) in again.detail
    assert exported.stat().st_mtime_ns == before


def test_cache_skips_the_model_for_a_seen_query_and_chunk(
    loaded: dict[str, RerankerStatus],
) -> None:
    counting = CountingScorer(_reranker(loaded["torch"]).scorer)
    reranker = CrossEncoderReranker("test", "torch", counting)
    head = CANDIDATES[:3]

    first = reranker.score(QUERY, head)
    assert counting.calls == [3]

    # Same query up to whitespace, same chunk ids: answered from the cache, identical scores.
    assert reranker.score(f"  {QUERY.replace(' ', '   ')}\n", head) == first
    assert counting.calls == [3]

    # One chunk id not seen before: only that pair runs.
    more = reranker.score(QUERY, [*head, CANDIDATES[3]])
    assert counting.calls == [3, 1] and more[:3] == first

    # Another query is another key.
    reranker.score("copper prices", head)
    assert counting.calls == [3, 1, 3]
    assert reranker.pairs_scored == 7


def test_score_cache_is_a_bounded_lru() -> None:
    cache = ScoreCache(max_entries=2)
    cache.put_many({("q", "a"): 1.0, ("q", "b"): 2.0})
    assert cache.get_many([("q", "a")]) == {("q", "a"): 1.0}  # touch a: b is now oldest
    cache.put_many({("q", "c"): 3.0})
    assert len(cache) == 2
    assert cache.get_many([("q", "a"), ("q", "b"), ("q", "c")]) == {
        ("q", "a"): 1.0,
        ("q", "c"): 3.0,
    }
    assert normalise_query(" Café\u0301  au\tlait ") == normalise_query("Café\u0301 au lait")


def test_unknown_backend_and_unloadable_model_are_reported_not_raised(
    tmp_path: Path, test_reranker_path: Path
) -> None:
    unknown = load_reranker(str(test_reranker_path), backend="tensorrt")
    assert not unknown.loaded and "unknown reranker backend 'tensorrt'" in unknown.detail
    for backend in BACKENDS:
        missing = load_reranker(str(tmp_path / "no-such-model"), backend=backend)
        assert not missing.loaded and "could not be loaded" in missing.detail


def test_export_never_overwrites_a_shipped_onnx_file(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "onnx").mkdir(parents=True)
    (model / "onnx" / "model.onnx").write_bytes(b"someone else's export")
    fingerprint = "ab" * 32
    cache = tmp_path / "cache"
    chosen = export_directory(str(model), cache, fingerprint, ["model.onnx"])
    assert chosen == cache / fingerprint[:16]
    with pytest.raises(OnnxUnavailable, match="no writable place"):
        export_directory(str(model), None, fingerprint, ["model.onnx"])
    assert not is_current(model / "onnx" / "model.onnx", fingerprint)


def test_quantization_preset_follows_the_cpu() -> None:
    vnni = quantization_target(frozenset({"avx2", "avx512f", "avx512_vnni"}), "x86_64")
    assert vnni.file_name == "model_qint8_avx512_vnni.onnx" and not vnni.reduce_range
    # Without VNNI, u8 x s8 products can saturate: 7-bit weights, or u8 weights on AVX2.
    assert quantization_target(frozenset({"avx2", "avx512f"}), "x86_64").reduce_range
    assert quantization_target(frozenset({"avx2"}), "x86_64").file_name == "model_quint8_avx2.onnx"
    assert quantization_target(frozenset(), "aarch64").name == "arm64"


def test_max_length_fits_a_whole_chunk_with_title_and_query() -> None:
    # A chunk is at most WINDOW_TOKENS word-pieces; leave room for a title, a query and the
    # three special tokens, within MiniLM's 512 positions.
    assert WINDOW_TOKENS + 64 + 48 + 3 <= RERANK_MAX_LENGTH <= 512
    assert OVERLAP_TOKENS > 0  # truncation drops a chunk's tail, which the next chunk repeats
