"""The torch backend: sentence-transformers' `CrossEncoder.predict`, the reference scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ranking.embedder import quiet_model_loading

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder


def load_cross_encoder(model: str, max_length: int) -> CrossEncoder:
    """The model as sentence-transformers loads it, from a local path or the offline hub cache."""
    quiet_model_loading()
    from sentence_transformers import CrossEncoder

    loaded: CrossEncoder = CrossEncoder(model, num_labels=1, max_length=max_length, device="cpu")
    return loaded


class TorchPairScorer:
    """Scores (query, passage) pairs with the torch model; higher is better.

    `predict` sorts pairs by length before batching, so each batch pads only to its own longest
    pair; that is most of the batching win on CPU.
    """

    def __init__(self, model: CrossEncoder, *, batch_size: int) -> None:
        self._model = model
        self.batch_size = batch_size

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        if not pairs:
            return []
        scores = self._model.predict(
            list(pairs),
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return [float(s) for s in scores]
