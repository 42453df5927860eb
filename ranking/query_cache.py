"""A bounded LRU of query embeddings keyed by normalised query text.

A query's vector depends only on its text and the embedder, never on chunks, so nothing a
re-ingest does can make an entry stale. The cache belongs to one `SearchPipeline`, which holds
one embedder for its life: a different model means a new pipeline and an empty cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping

import numpy as np
from numpy.typing import NDArray

# all-MiniLM-L6-v2 vectors are 384 float32 = 1.5 KB; with the key and dict overhead ~1.7 KB an
# entry, 10,000 entries (a day's head of repeated queries for a busy agent) hold ~17 MB.
QUERY_CACHE_SIZE = 10_000

Vector = NDArray[np.float32]


class QueryVectorCache:
    """Thread-safe LRU map from normalised query to its vector; `max_entries=0` disables.

    Vectors are copied in and out, so no caller can change what another is served.
    `hits` and `misses` count lookups, for tests and metrics.
    """

    def __init__(self, max_entries: int = QUERY_CACHE_SIZE) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, Vector] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, queries: Iterable[str], *, count: bool = True) -> dict[str, Vector]:
        """Vectors of the queries held; `count=False` leaves `hits` and `misses` alone."""
        found: dict[str, Vector] = {}
        with self._lock:
            for query in queries:
                vector = self._entries.get(query)
                if vector is None:
                    self.misses += count
                    continue
                self.hits += count
                self._entries.move_to_end(query)
                found[query] = vector.copy()
        return found

    def put_many(self, vectors: Mapping[str, Vector]) -> None:
        if self.max_entries == 0:
            return
        with self._lock:
            for query, vector in vectors.items():
                self._entries[query] = np.array(vector, dtype=np.float32, copy=True)
                self._entries.move_to_end(query)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
