"""ONNX Runtime backends for the sentence embedder: `onnx` (fp32) and `onnx-int8` (dynamic int8).

The export, quantization and session machinery is the cross-encoder's (`ranking.rerank_onnx`,
whose docstring says why sentence-transformers' own ONNX backend cannot be used with our pins);
this module adds the embedder's graph (the transformer's `last_hidden_state`) and does the
model's pooling and normalisation in numpy, exactly as the sentence-transformers pipeline
(Transformer -> mean Pooling -> Normalize) does for all-MiniLM-L6-v2. Other pooling modes are
refused rather than approximated. Exports live in `cache_dir` (the service passes
`<data dir>/embedder-onnx`), keyed by a fingerprint of the weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ranking.embedder import DEFAULT_EMBEDDER, EMBED_BATCH, quiet_model_loading, resolve_model
from ranking.rerank_onnx import (
    EXPORT_FORMAT,
    ONNX_FILE,
    OPSET,
    OnnxUnavailable,
    _quiet_export,
    _replacing,
    hash_weights,
    is_current,
    open_session,
    quantization_target,
    quantize_onnx,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def _fingerprint(model: SentenceTransformer) -> str:
    digest = hashlib.sha256(f"{EXPORT_FORMAT}:embedder".encode())
    for module in model:
        digest.update(type(module).__name__.encode() + b"\x00")
    hash_weights(digest, model)
    return digest.hexdigest()


def _check_pipeline(model: SentenceTransformer) -> None:
    names = [type(m).__name__ for m in model]
    if names[:2] != ["Transformer", "Pooling"] or names[2:] not in ([], ["Normalize"]):
        raise OnnxUnavailable(
            f"the ONNX embedder supports Transformer+Pooling(+Normalize), not {names}"
        )
    mode = getattr(model[1], "pooling_mode", None)
    if mode != "mean":
        raise OnnxUnavailable(f"the ONNX embedder supports mean pooling, not {mode}")


def _export(model: SentenceTransformer, path: Path, fingerprint: str) -> None:
    import torch

    transformer: Any = model[0].auto_model
    # Eager attention exports as plain MatMul/Softmax that onnxruntime fuses and quantizes well
    # (see `ranking.rerank_onnx.export_onnx`).
    with contextlib.suppress(AttributeError, ValueError):
        transformer.set_attn_implementation("eager")

    class Hidden(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state  # type: ignore[no-any-return]

    sample = model.tokenizer(["a query", "a longer second text"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with _replacing(path, fingerprint) as tmp, _quiet_export(), torch.no_grad():
        torch.onnx.export(
            Hidden(transformer).eval(),
            tuple(sample[name] for name in names),
            str(tmp),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in names},
            opset_version=OPSET,
            dynamo=False,
        )


class OnnxEmbedder:
    """The `Embedder` protocol on ONNX Runtime: same tokenizer, truncation, pooling and unit
    length as `SentenceEmbedder`, so the two are interchangeable over one index."""

    def __init__(
        self,
        model: str | None = None,
        *,
        quantized: bool,
        cache_dir: Path | None,
        batch_size: int = EMBED_BATCH,
        threads: int | None = None,
    ) -> None:
        quiet_model_loading()
        import torch
        from sentence_transformers import SentenceTransformer

        self.model_name = model or DEFAULT_EMBEDDER
        path = resolve_model(model)
        st_model = SentenceTransformer(path, device="cpu")
        _check_pipeline(st_model)
        self.dim = int(st_model.get_embedding_dimension() or 0)
        self.max_tokens = int(st_model.max_seq_length or 256)
        self._normalize = any(type(m).__name__ == "Normalize" for m in st_model)
        self._tokenizer = st_model.tokenizer
        self._batch_size = batch_size
        fingerprint = _fingerprint(st_model)
        target = quantization_target() if quantized else None
        # Only the cache dir: the packaged model lives in site-packages, which is no place to
        # write, and a reinstall would drop the export anyway.
        if cache_dir is None:
            raise OnnxUnavailable("the ONNX embedder needs a cache dir for its export")
        directory = cache_dir / fingerprint[:16]
        directory.mkdir(parents=True, exist_ok=True)
        fp32 = directory / ONNX_FILE
        if not is_current(fp32, fingerprint):
            _export(st_model, fp32, fingerprint)
        self.model_file = fp32
        if target is not None:
            self.model_file = directory / target.file_name
            if not is_current(self.model_file, fingerprint):
                quantize_onnx(fp32, self.model_file, target, fingerprint)
        self.backend = "onnx-int8" if quantized else "onnx"
        self._session: Any = open_session(self.model_file, threads or torch.get_num_threads())
        # One run at a time: concurrent runs on 2 cores only contend for the same threads.
        self._lock = threading.Lock()

    def _encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Longest first, as sentence-transformers does, so each batch pads to its own longest.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), self._batch_size):
            batch = order[start : start + self._batch_size]
            encoded = self._tokenizer(
                [texts[i] for i in batch],
                padding=True,
                truncation="longest_first",
                max_length=self.max_tokens,
                return_tensors="np",
            )
            feed = {
                name: encoded[name].astype(np.int64)
                for name in ("input_ids", "attention_mask", "token_type_ids")
            }
            with self._lock:
                (hidden,) = self._session.run(["last_hidden_state"], feed)
            mask = feed["attention_mask"][:, :, None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            if self._normalize:
                pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            out[batch] = pooled
        return out

    def embed_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self._encode(texts)

    def embed_passages(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self._encode(texts)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        encoded = self._tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        return [(int(s), int(e)) for s, e in encoded["offset_mapping"]]
