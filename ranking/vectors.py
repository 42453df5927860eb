"""The protocol every vector index implements, and the ingest/search contract it follows.

Indexes are partitioned by dataset and versioned by the dataset's *generation*, a counter that the
SQL catalog bumps in the transaction that commits an ingest. That commit is the moment new content
becomes visible:

1. `prepare(...)` makes the new generation's vectors available without disturbing readers of the
   current one (FAISS writes new files; Qdrant upserts points that SQL does not list yet).
2. The catalog commit flips the generation.
3. `finalize(...)` removes what the old generation needed and the new one does not.

If the commit fails, `abort(...)` removes what `prepare` staged, so nothing orphaned lingers.

Search receives the generation of every dataset it may read, as the catalog says now, so a search
never mixes two versions of a dataset's files. Candidates are then hydrated from SQL, which drops
any vector whose chunk the catalog does not (or no longer) list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from ranking.removal import Removed


class VectorIndex(Protocol):
    name: str

    def prepare(
        self,
        dataset_id: str,
        *,
        base_generation: int,
        generation: int,
        add_ids: Sequence[str],
        add_vectors: NDArray[np.float32],
        remove_ids: Sequence[str],
    ) -> None: ...

    def finalize(self, dataset_id: str, *, generation: int, remove_ids: Sequence[str]) -> None: ...

    def abort(self, dataset_id: str, *, generation: int, add_ids: Sequence[str]) -> None: ...

    def search(
        self, query: NDArray[np.float32], k: int, generations: Mapping[str, int]
    ) -> list[tuple[str, float]]: ...

    def chunk_ids(self, dataset_id: str, generation: int) -> set[str]: ...

    def drop(self, dataset_id: str) -> Removed:
        """Remove every vector of the dataset, whatever its generation, and count them (a
        revocation; the catalog has already stopped serving the dataset)."""
        ...

    def close(self) -> None: ...


def merge_top_k(parts: Sequence[list[tuple[str, float]]], k: int) -> list[tuple[str, float]]:
    """Merge per-dataset (id, score) lists into one top-k list; ties break on id."""
    merged = [pair for part in parts for pair in part]
    merged.sort(key=lambda pair: (-pair[1], pair[0]))
    return merged[:k]
