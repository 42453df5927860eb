"""FAISS serving index: one immutable file set per (dataset, generation), loaded into memory."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import faiss
import numpy as np
from numpy.typing import NDArray

from ranking.faiss_build import (
    EXACT_THRESHOLD,
    build_index,
    configure_for_search,
    one_thread_per_query,
)
from ranking.loaded import LoadedGenerations
from ranking.removal import Removed, remove_tree
from ranking.vectors import merge_top_k


def read_mapped(path: Path) -> faiss.Index:
    """Memory-map an index file rather than read it into this process.

    Index files are never written in place (each generation has its own directory), so mapping
    is safe, and the vectors then live in the page cache, which every `fairshare serve` worker
    on the machine shares, instead of one private copy per process. FAISS maps the two kinds we
    build with different flags (they fail together), told apart by the file's first four bytes:
    IVF ("Iw..") maps its inverted lists, flat ("Ix..") its vectors.
    """
    with path.open("rb") as handle:
        ivf = handle.read(2) == b"Iw"
    flags = faiss.IO_FLAG_MMAP if ivf else faiss.IO_FLAG_MMAP_IFC
    return faiss.read_index(str(path), flags | faiss.IO_FLAG_READ_ONLY)


class _Loaded:
    __slots__ = ("generation", "ids", "index")

    def __init__(self, generation: int, index: faiss.Index, ids: list[str]) -> None:
        self.generation = generation
        self.index = index
        self.ids = ids


class FaissIndex:
    """Inner-product search over unit vectors (cosine), per dataset.

    Layout: `<root>/<dataset>/<generation>/{vectors.npy, ids.json, index.faiss}`. A generation's
    directory is written to a temporary name and renamed into place, so a reader sees all of it or
    none of it. `vectors.npy` is the source the next generation is rebuilt from.

    A generation with fewer than `exact_threshold` vectors is searched exactly; a larger one gets
    an IVF index (see `ranking.faiss_build`), so its results may miss a few true neighbours
    (recall@10 ≥ 0.98 against exact in `bench/faiss_scale.py`). Scores are exact cosines either way.
    """

    name = "faiss"

    def __init__(self, root: Path, dim: int, *, exact_threshold: int = EXACT_THRESHOLD) -> None:
        self.root = root
        self.dim = dim
        self.exact_threshold = exact_threshold
        self._loaded = LoadedGenerations(self._load)

    def _dir(self, dataset_id: str, generation: int) -> Path:
        return self.root / dataset_id / str(generation)

    def _read_ids(self, dataset_id: str, generation: int) -> list[str]:
        path = self._dir(dataset_id, generation) / "ids.json"
        if not path.exists():
            return []
        ids: list[str] = json.loads(path.read_text())
        return ids

    def _read_vectors(self, dataset_id: str, generation: int) -> NDArray[np.float32]:
        path = self._dir(dataset_id, generation) / "vectors.npy"
        if not path.exists():
            return np.zeros((0, self.dim), dtype=np.float32)
        # Memory-mapped: at 1M x 384 the file is 1.5 GB, and only the kept rows need copying.
        vectors: NDArray[np.float32] = np.load(path, mmap_mode="r")
        return vectors

    def prepare(
        self,
        dataset_id: str,
        *,
        base_generation: int,
        generation: int,
        add_ids: Sequence[str],
        add_vectors: NDArray[np.float32],
        remove_ids: Sequence[str],
    ) -> None:
        ids = self._read_ids(dataset_id, base_generation)
        vectors = self._read_vectors(dataset_id, base_generation)
        drop = set(remove_ids) | set(add_ids)
        keep = [i for i, chunk_id in enumerate(ids) if chunk_id not in drop]
        new_ids = [ids[i] for i in keep] + list(add_ids)
        # One allocation for the new generation's matrix (no vstack/astype copies): with the
        # index's own copy (and a k-means sample) that is the peak, ~3.2 GB at 1M x 384.
        new_vectors = np.empty((len(new_ids), self.dim), dtype=np.float32)
        np.take(vectors, keep, axis=0, out=new_vectors[: len(keep)])
        new_vectors[len(keep) :] = np.asarray(add_vectors, dtype=np.float32).reshape(-1, self.dim)
        del vectors
        index = build_index(new_vectors, exact_threshold=self.exact_threshold)
        target = self._dir(dataset_id, generation)
        staging = target.with_name(f".{generation}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        np.save(staging / "vectors.npy", new_vectors)
        (staging / "ids.json").write_text(json.dumps(new_ids))
        faiss.write_index(index, str(staging / "index.faiss"))
        # A failed earlier attempt may have left this generation behind; it was never committed.
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)

    def finalize(self, dataset_id: str, *, generation: int, remove_ids: Sequence[str]) -> None:
        dataset_dir = self.root / dataset_id
        if not dataset_dir.exists():
            return
        for child in dataset_dir.iterdir():
            # Older generations are garbage once the catalog points past them. Servers that loaded
            # one keep it until they see the new generation: a mapped file that is unlinked
            # stays readable until it is unmapped.
            if child.name.isdigit() and int(child.name) < generation:
                shutil.rmtree(child, ignore_errors=True)

    def abort(self, dataset_id: str, *, generation: int, add_ids: Sequence[str]) -> None:
        shutil.rmtree(self._dir(dataset_id, generation), ignore_errors=True)

    def drop(self, dataset_id: str) -> Removed:
        """Delete every file of the dataset and unload it; counts the chunk ids its id maps
        held. Files go first, so no search in this process can load them again."""
        removed = remove_tree(self.root / dataset_id)
        self.forget(dataset_id)
        return removed

    def forget(self, dataset_id: str) -> bool:
        """Unload the dataset, if loaded (its mapped files are released once no search in
        flight still holds them). For a server whose catalog stopped serving it."""
        return self._loaded.forget(dataset_id)

    def retain(self, dataset_ids: Collection[str]) -> list[str]:
        """Unload every dataset but these; returns the datasets unloaded."""
        return self._loaded.retain(dataset_ids)

    def _load(self, dataset_id: str, generation: int) -> _Loaded | None:
        directory = self._dir(dataset_id, generation)
        if not directory.exists():
            return None
        index = configure_for_search(read_mapped(directory / "index.faiss"))
        ids = json.loads((directory / "ids.json").read_text())
        return _Loaded(generation, index, ids)

    def search(
        self, query: NDArray[np.float32], k: int, generations: Mapping[str, int]
    ) -> list[tuple[str, float]]:
        matrix = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        parts: list[list[tuple[str, float]]] = []
        for dataset_id, generation in sorted(generations.items()):
            loaded = self._loaded.get(dataset_id, generation)
            if loaded is None or loaded.index.ntotal == 0:
                continue
            with one_thread_per_query():
                scores, positions = loaded.index.search(matrix, min(k, loaded.index.ntotal))
            parts.append(
                [
                    (loaded.ids[int(p)], float(s))
                    for s, p in zip(scores[0], positions[0], strict=True)
                    if p >= 0
                ]
            )
        return merge_top_k(parts, k)

    def chunk_ids(self, dataset_id: str, generation: int) -> set[str]:
        return set(self._read_ids(dataset_id, generation))

    def close(self) -> None:
        self._loaded.clear()
