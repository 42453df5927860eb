"""ONNX Runtime backends for the cross-encoder: `onnx` (fp32) and `onnx-int8` (dynamic int8).

Why not sentence-transformers' own `CrossEncoder(..., backend="onnx")`: it runs through
optimum-onnx, whose only release (0.1.0) requires transformers<4.58, and this project pins
transformers 5.24 (optimum-onnx issues #114 and #141 are open for it). So the same three steps are
done here directly: export with `torch.onnx`, quantize with
`onnxruntime.quantization.quantize_dynamic` (what optimum's `ORTQuantizer` wraps) and score with an
`onnxruntime.InferenceSession`. The files follow sentence-transformers' layout and contract
(`onnx/model.onnx`, `onnx/model_qint8_avx512_vnni.onnx`, output `logits`, activation applied after),
so they are the files its ONNX backend would load once that dependency resolves.

Nothing is downloaded. The export is made once from the model's own weights and reused:

- `<model dir>/onnx/` when the model is a local directory we can write to and that holds no
  ONNX file of someone else's (a model repository's shipped export is never overwritten);
- else `<cache_dir>/<first 16 hex digits of the fingerprint>/` (the service passes
  `<data dir>/reranker-onnx`), which also serves models loaded by hub name.

Each exported file has a `<file>.fingerprint` beside it: a hash of the weights, architecture and
activation it came from. A file whose fingerprint does not match the loaded weights is re-exported,
so retrained weights saved over the same directory never run with a stale graph.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ranking.rerank_torch import load_cross_encoder

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

ONNX_FILE = "model.onnx"
# Bump when the exported graph's contract (inputs, outputs, opset) changes: old exports are redone.
EXPORT_FORMAT = "fairshare-onnx-2"
# Opset 17 has LayerNormalization as one op; every onnxruntime >= 1.14 runs it.
OPSET = 17


class OnnxUnavailable(RuntimeError):
    """The ONNX backend cannot be used here; the message says why (it reaches /readyz)."""


@dataclass(frozen=True, slots=True)
class QuantTarget:
    """One of sentence-transformers' dynamic-quantization presets, chosen for this CPU."""

    name: str  # arm64 | avx2 | avx512 | avx512_vnni, as sentence-transformers names them
    signed_weights: bool
    reduce_range: bool

    @property
    def file_name(self) -> str:
        return f"model_{'qint8' if self.signed_weights else 'quint8'}_{self.name}.onnx"


def cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def quantization_target(
    flags: frozenset[str] | None = None, machine: str | None = None
) -> QuantTarget:
    """Weights int8 where the CPU multiplies u8 x s8 without saturating, else a safe fallback.

    onnxruntime's quantization guide: with VNNI, u8 activations x s8 weights is exact and fastest;
    on AVX-512 or AVX2 without VNNI that product can saturate, so either weights use 7 bits
    (`reduce_range`) or both sides are u8. ARM has no such issue.
    """
    if (machine or platform.machine()).lower() in ("arm64", "aarch64"):
        return QuantTarget("arm64", signed_weights=True, reduce_range=False)
    flags = cpu_flags() if flags is None else flags
    if "avx512_vnni" in flags:
        return QuantTarget("avx512_vnni", signed_weights=True, reduce_range=False)
    if "avx512f" in flags:
        return QuantTarget("avx512", signed_weights=True, reduce_range=True)
    return QuantTarget("avx2", signed_weights=False, reduce_range=False)


def weights_fingerprint(model: CrossEncoder) -> str:
    """Hash of what the exported graph computes: weights, architecture, activation, format."""
    transformer = model.model
    if transformer is None:
        raise OnnxUnavailable("the cross-encoder has no transformer model to export")
    digest = hashlib.sha256()
    activation = type(model.activation_fn)
    for part in (
        EXPORT_FORMAT,
        type(transformer).__name__,
        f"{activation.__module__}.{activation.__qualname__}",
    ):
        digest.update(part.encode() + b"\x00")
    hash_weights(digest, transformer)
    return digest.hexdigest()


def hash_weights(digest: Any, module: Any) -> None:
    """Feed every tensor of `module` (name, dtype, shape and bytes) into `digest`, in name order."""
    import torch

    with torch.no_grad():
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
            digest.update(memoryview(raw.numpy()))


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".fingerprint")


def is_current(path: Path, fingerprint: str) -> bool:
    try:
        return path.exists() and _sidecar(path).read_text().strip() == fingerprint
    except OSError:
        return False


def _usable(directory: Path, file_names: Sequence[str]) -> bool:
    """A directory we may export into: writable, and no file we would write is someone else's."""
    for name in file_names:
        path = directory / name
        if path.exists() and not _sidecar(path).exists():
            return False
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory):
            pass
    except OSError:
        return False
    return True


def export_directory(
    model: str, cache_dir: Path | None, fingerprint: str, file_names: Sequence[str]
) -> Path:
    """Where the export for these weights lives (see the module docstring for the order)."""
    candidates = []
    if Path(model).is_dir():
        candidates.append(Path(model) / "onnx")
    if cache_dir is not None:
        candidates.append(cache_dir / fingerprint[:16])
    for directory in candidates:
        if all(is_current(directory / name, fingerprint) for name in file_names):
            return directory
    for directory in candidates:
        if _usable(directory, file_names):
            return directory
    raise OnnxUnavailable(
        "no writable place for the ONNX export: "
        + (", ".join(str(c) for c in candidates) or "the model is not a local directory")
        + " (set a cache dir, e.g. FAIRSHARE_DATA_DIR)"
    )


@contextlib.contextmanager
def _replacing(path: Path, fingerprint: str) -> Iterator[Path]:
    """Write `path` through a temp file and rename, then its fingerprint: replicas starting at
    once may race to export, and a reader must never see half a file or a stale fingerprint."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the export from other service users
        _sidecar(path).unlink(missing_ok=True)
        os.replace(tmp, path)
        sidecar_tmp = Path(tmp + ".fingerprint")
        sidecar_tmp.write_text(fingerprint + "\n")
        os.replace(sidecar_tmp, _sidecar(path))
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """The exporter logs per-op registration notes and deprecation warnings that say nothing
    about our graph; failures still raise."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "root")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_onnx(model: CrossEncoder, path: Path, fingerprint: str) -> None:
    """Export the transformer's `logits` with dynamic batch and sequence axes.

    Switches `model` to eager attention first: the caller discards it after exporting.
    """
    import torch

    transformer = model.model
    if transformer is None or model.tokenizer is None:
        raise OnnxUnavailable("the cross-encoder has no transformer model or tokenizer to export")
    # Eager attention exports as plain MatMul/Softmax, which onnxruntime fuses (GELU, layer norms)
    # and quantizes well; the SDPA form adds NaN guards per layer and ran ~1.6x slower at int8 in
    # bench runs. The TorchScript exporter (`dynamo=False`) is deprecated but present in the pinned
    # torch, exports in ~1 s instead of ~5 s, and produced the faster graph of the two; it also
    # needs no onnxscript. A torch that drops it fails this export, which the tests exercise.
    with contextlib.suppress(AttributeError, ValueError):
        transformer.set_attn_implementation("eager")

    class Logits(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor | None = None,
        ) -> torch.Tensor:
            # Models without segment ids (RoBERTa-style) are exported without that input.
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, **extra)
            return out.logits  # type: ignore[no-any-return]

    sample = model.tokenizer(
        ["a query", "another query"],
        ["a passage to score", "a second passage"],
        padding=True,
        return_tensors="pt",
    )
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    with _replacing(path, fingerprint) as tmp, _quiet_export(), torch.no_grad():
        torch.onnx.export(
            Logits(transformer).eval(),
            tuple(sample[name] for name in names),
            str(tmp),
            input_names=names,
            output_names=["logits"],
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in names},
            opset_version=OPSET,
            dynamo=False,
        )


def quantize_onnx(source: Path, path: Path, target: QuantTarget, fingerprint: str) -> None:
    """Dynamic int8 quantization of the fp32 export: weights now, activations per batch."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _replacing(path, fingerprint) as tmp, _quiet_export():
        quantize_dynamic(
            source,
            tmp,
            weight_type=QuantType.QInt8 if target.signed_weights else QuantType.QUInt8,
            per_channel=True,
            reduce_range=target.reduce_range,
        )


def open_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle workers would spin-wait for the next batch, burning the cores the embedder, BM25 and
    # the event loop share with us; the wake-up costs less than that between requests.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxPairScorer:
    """Scores (query, passage) pairs with an ONNX Runtime session, like `CrossEncoder.predict`:
    same tokenizer and truncation, length-sorted batches, the model's activation on the logits."""

    def __init__(
        self,
        session: Any,
        tokenizer: Any,
        activation: Callable[[Any], Any],
        *,
        max_length: int,
        batch_size: int,
        model_file: Path,
    ) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._activation = activation
        self._input_names = [i.name for i in session.get_inputs()]
        self.max_length = max_length
        self.batch_size = batch_size
        self.model_file = model_file

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        import torch

        # Longest first, as `predict` does, so each batch pads only to its own longest pair.
        order = sorted(range(len(pairs)), key=lambda i: -len(pairs[i][0]) - len(pairs[i][1]))
        logits = np.zeros(len(pairs), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            encoded = self._tokenizer(
                [pairs[i][0] for i in batch],
                [pairs[i][1] for i in batch],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="np",
            )
            feed = {name: encoded[name].astype(np.int64) for name in self._input_names}
            (out,) = self._session.run(["logits"], feed)
            logits[batch] = out.reshape(len(batch), -1)[:, 0]
        with torch.no_grad():
            scores = self._activation(torch.from_numpy(logits))
        return [float(s) for s in scores]


def load_onnx_scorer(
    model: str,
    *,
    quantized: bool,
    cache_dir: Path | None,
    max_length: int,
    batch_size: int,
) -> OnnxPairScorer:
    """Load (exporting and quantizing on first use) the ONNX form of `model`. Raises on failure."""
    import torch

    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise OnnxUnavailable(f"onnxruntime is not installed ({exc})") from None
    # The torch model is loaded even when an export exists: the fingerprint is taken from its
    # weights, and it supplies the tokenizer and activation exactly as the torch backend uses them.
    # It is released when this returns; only the session, tokenizer and activation stay.
    cross_encoder = load_cross_encoder(model, max_length)
    fingerprint = weights_fingerprint(cross_encoder)
    target = quantization_target() if quantized else None
    names = [ONNX_FILE] + ([target.file_name] if target else [])
    directory = export_directory(model, cache_dir, fingerprint, names)
    fp32 = directory / ONNX_FILE
    if not is_current(fp32, fingerprint):
        export_onnx(cross_encoder, fp32, fingerprint)
    path = fp32
    if target is not None:
        path = directory / target.file_name
        if not is_current(path, fingerprint):
            quantize_onnx(fp32, path, target, fingerprint)
    activation = cross_encoder.activation_fn or torch.nn.Identity()
    return OnnxPairScorer(
        open_session(path, torch.get_num_threads()),
        cross_encoder.tokenizer,
        activation,
        max_length=max_length,
        batch_size=batch_size,
        model_file=path,
    )
