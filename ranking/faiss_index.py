"""FAISS serving index: one immutable file set per (dataset, generation), loaded into memory."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import faiss
import numpy as np
from numpy.typing import NDArray

from ranking.vectors import merge_top_k


class _Loaded:
    __slots__ = ("generation", "ids", "index")

    def __init__(self, generation: int, index: faiss.Index, ids: list[str]) -> None:
        self.generation = generation
        self.index = index
        self.ids = ids


class FaissIndex:
    """Exact inner-product search over unit vectors (cosine), per dataset.

    Layout: `<root>/<dataset>/<generation>/{vectors.npy, ids.json, index.faiss}`. A generation's
    directory is written to a temporary name and renamed into place, so a reader sees all of it or
    none of it.
    """

    name = "faiss"

    def __init__(self, root: Path, dim: int) -> None:
        self.root = root
        self.dim = dim
        self._loaded: dict[str, _Loaded] = {}
        self._lock = threading.Lock()

    def _dir(self, dataset_id: str, generation: int) -> Path:
        return self.root / dataset_id / str(generation)

    def _read_vectors(
        self, dataset_id: str, generation: int
    ) -> tuple[list[str], NDArray[np.float32]]:
        directory = self._dir(dataset_id, generation)
        if not directory.exists():
            return [], np.zeros((0, self.dim), dtype=np.float32)
        ids = json.loads((directory / "ids.json").read_text())
        vectors = np.load(directory / "vectors.npy")
        return ids, vectors

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
        ids, vectors = self._read_vectors(dataset_id, base_generation)
        drop = set(remove_ids) | set(add_ids)
        keep = [i for i, chunk_id in enumerate(ids) if chunk_id not in drop]
        new_ids = [ids[i] for i in keep] + list(add_ids)
        new_vectors = np.vstack([vectors[keep], add_vectors]).astype(np.float32)
        index = faiss.IndexFlatIP(self.dim)
        if len(new_ids):
            index.add(new_vectors)
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
            # one keep it in memory until they see the new generation.
            if child.name.isdigit() and int(child.name) < generation:
                shutil.rmtree(child, ignore_errors=True)

    def abort(self, dataset_id: str, *, generation: int, add_ids: Sequence[str]) -> None:
        shutil.rmtree(self._dir(dataset_id, generation), ignore_errors=True)

    def drop(self, dataset_id: str) -> None:
        shutil.rmtree(self.root / dataset_id, ignore_errors=True)
        with self._lock:
            self._loaded.pop(dataset_id, None)

    def _get(self, dataset_id: str, generation: int) -> _Loaded | None:
        loaded = self._loaded.get(dataset_id)
        if loaded is not None and loaded.generation == generation:
            return loaded
        with self._lock:
            loaded = self._loaded.get(dataset_id)
            if loaded is not None and loaded.generation == generation:
                return loaded
            directory = self._dir(dataset_id, generation)
            if not directory.exists():
                return None
            index = faiss.read_index(str(directory / "index.faiss"))
            ids = json.loads((directory / "ids.json").read_text())
            loaded = _Loaded(generation, index, ids)
            self._loaded[dataset_id] = loaded
            return loaded

    def search(
        self, query: NDArray[np.float32], k: int, generations: Mapping[str, int]
    ) -> list[tuple[str, float]]:
        matrix = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        parts: list[list[tuple[str, float]]] = []
        for dataset_id, generation in sorted(generations.items()):
            loaded = self._get(dataset_id, generation)
            if loaded is None or loaded.index.ntotal == 0:
                continue
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
        return set(self._read_vectors(dataset_id, generation)[0])

    def close(self) -> None:
        with self._lock:
            self._loaded.clear()
