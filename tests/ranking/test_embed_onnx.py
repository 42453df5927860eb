"""The ONNX embedder backends against the torch embedder they replace, on real text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ranking.embed_onnx import OnnxEmbedder
from ranking.embedder import Embedder

TEXTS = [
    "Aspirin reduces the risk of a second heart attack in adults with coronary disease.",
    "The court held that the contract was repudiated when the supplier stopped deliveries.",
    "Copper prices rose as mine output in Chile fell short of guidance.",
    "Glaciers in the Alps lost a record share of their ice mass last summer.",
    "x" * 3000,  # longer than the model reads: truncated the same way
]
QUERIES = ["heart attack prevention", "breach of contract", "copper supply", "melting ice"]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedder-onnx")


def test_fp32_onnx_gives_the_torch_embeddings(torch_embedder: Embedder, onnx_cache: Path) -> None:
    onnx = OnnxEmbedder(quantized=False, cache_dir=onnx_cache)
    ours, theirs = onnx.embed_passages(TEXTS), torch_embedder.embed_passages(TEXTS)
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert float((ours * theirs).sum(axis=1).min()) > 0.9999
    assert onnx.token_spans(TEXTS[0]) == torch_embedder.token_spans(TEXTS[0])
    assert (onnx.dim, onnx.max_tokens) == (torch_embedder.dim, torch_embedder.max_tokens)


def test_int8_onnx_ranks_like_torch(torch_embedder: Embedder, onnx_cache: Path) -> None:
    int8 = OnnxEmbedder(quantized=True, cache_dir=onnx_cache)
    assert int8.model_file.name.startswith("model_") and int8.backend == "onnx-int8"
    docs, queries = int8.embed_passages(TEXTS[:4]), int8.embed_queries(QUERIES)
    reference = torch_embedder.embed_passages(TEXTS[:4])
    assert float((docs * reference).sum(axis=1).min()) > 0.98
    # Each query's best document is the one written for it, as with the torch embeddings.
    assert list((queries @ docs.T).argmax(axis=1)) == [0, 1, 2, 3]


def test_export_is_made_once_and_reused(onnx_cache: Path) -> None:
    first = OnnxEmbedder(quantized=False, cache_dir=onnx_cache)
    written = first.model_file.stat().st_mtime_ns
    again = OnnxEmbedder(quantized=False, cache_dir=onnx_cache)
    assert again.model_file == first.model_file
    # Only in the cache dir: never beside the packaged model, nor in the working directory.
    assert first.model_file.is_relative_to(onnx_cache)
    assert again.model_file.stat().st_mtime_ns == written
