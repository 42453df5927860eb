"""A bounded LRU of cross-encoder scores keyed by (normalised query, chunk id).

No invalidation is needed beyond eviction: a chunk id hashes its document's content, title
included (`ingest.chunking.chunk_id`), so any change to the text the cross-encoder reads makes a
new id, and a stale score can never be served for new text. The cache lives on one reranker
instance, so a different model, backend or max length starts with an empty cache. A revoked
dataset's entries are dropped all the same (`discard_chunks`): nothing derived from its content
is kept.
"""

from __future__ import annotations

import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable, Mapping

# ~100k entries x ~250 bytes (a query string shared per request, a 32-char id, a float and the
# dict/tuple overhead) is ~25 MB: a few thousand distinct queries' rerank heads.
RERANK_CACHE_SIZE = 100_000

CacheKey = tuple[str, str]


def normalise_query(query: str) -> str:
    """NFC and collapsed whitespace: a form every tokenizer reads the same as the original.

    The model scores this normalised text, so a cache hit returns exactly what a fresh run would.
    Case is kept: cased cross-encoders read it.
    """
    return " ".join(unicodedata.normalize("NFC", query).split())


class ScoreCache:
    """Thread-safe LRU map from (normalised query, chunk id) to score; `max_entries=0` disables.

    `hits` and `misses` count lookups, for tests and metrics."""

    def __init__(self, max_entries: int = RERANK_CACHE_SIZE) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[CacheKey, float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, keys: Iterable[CacheKey]) -> dict[CacheKey, float]:
        found: dict[CacheKey, float] = {}
        with self._lock:
            for key in keys:
                score = self._entries.get(key)
                if score is None:
                    self.misses += 1
                    continue
                self.hits += 1
                self._entries.move_to_end(key)
                found[key] = score
        return found

    def put_many(self, scores: Mapping[CacheKey, float]) -> None:
        if self.max_entries == 0:
            return
        with self._lock:
            for key, score in scores.items():
                self._entries[key] = score
                self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def chunk_ids(self) -> set[str]:
        """The chunks with a score held, for any query."""
        with self._lock:
            return {chunk_id for _, chunk_id in self._entries}

    def discard_chunks(self, chunk_ids: Iterable[str]) -> int:
        """Forget every score of these chunks, whatever the query; return how many went."""
        wanted = set(chunk_ids)
        with self._lock:
            doomed = [key for key in self._entries if key[1] in wanted]
            for key in doomed:
                del self._entries[key]
        return len(doomed)
