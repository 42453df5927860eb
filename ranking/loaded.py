"""The index generations a server holds in memory: one per dataset, loaded from disk on first use.

FAISS and BM25 keep their files per dataset and generation (`ranking.faiss_index`,
`ranking.lexical`); both keep what they loaded here, so loading, replacing and unloading behave
the same for the two.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from typing import Generic, Protocol, TypeVar


class Generation(Protocol):
    @property
    def generation(self) -> int: ...


G = TypeVar("G", bound=Generation)


class LoadedGenerations(Generic[G]):
    def __init__(self, load: Callable[[str, int], G | None]) -> None:
        """`load(dataset_id, generation)` reads one generation's files; None if there are none."""
        self._load = load
        self._loaded: dict[str, G] = {}
        self._lock = threading.Lock()

    def get(self, dataset_id: str, generation: int) -> G | None:
        """The dataset at `generation`, loading it (in place of an older one) if need be."""
        # Unlocked first: searches read a loaded generation far more often than one is loaded.
        loaded = self._loaded.get(dataset_id)
        if loaded is not None and loaded.generation == generation:
            return loaded
        with self._lock:
            loaded = self._loaded.get(dataset_id)
            if loaded is not None and loaded.generation == generation:
                return loaded
            loaded = self._load(dataset_id, generation)
            if loaded is not None:
                self._loaded[dataset_id] = loaded
            return loaded

    def forget(self, dataset_id: str) -> bool:
        """Unload the dataset, if loaded (a search in flight keeps what it already holds).
        For a server whose catalog stopped serving it."""
        with self._lock:
            return self._loaded.pop(dataset_id, None) is not None

    def retain(self, dataset_ids: Collection[str]) -> list[str]:
        """Unload every dataset but these (the ones a server still serves); returns the
        datasets unloaded."""
        with self._lock:
            gone = [d for d in self._loaded if d not in dataset_ids]
            for dataset_id in gone:
                del self._loaded[dataset_id]
        return gone

    def clear(self) -> None:
        with self._lock:
            self._loaded.clear()
