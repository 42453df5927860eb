"""BM25 lexical index (bm25s), one immutable index per (dataset, generation)."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import bm25s
import Stemmer
from bm25s.tokenization import Tokenizer

from ranking.vectors import merge_top_k

LANGUAGE = "english"


def _tokenizer() -> Tokenizer:
    # English stemming and stop words: the DESIGN baseline (nDCG@10 0.686 on SciFact).
    return Tokenizer(stopwords="en", stemmer=Stemmer.Stemmer(LANGUAGE))


class _Loaded:
    __slots__ = ("generation", "ids", "retriever", "tokenizer")

    def __init__(
        self, generation: int, retriever: bm25s.BM25, tokenizer: Tokenizer, ids: list[str]
    ) -> None:
        self.generation = generation
        self.retriever = retriever
        self.tokenizer = tokenizer
        self.ids = ids


class BM25Index:
    """Layout: `<root>/<dataset>/<generation>/` with bm25s files, the tokenizer vocab and ids."""

    name = "bm25"

    def __init__(self, root: Path) -> None:
        self.root = root
        self._loaded: dict[str, _Loaded] = {}
        self._lock = threading.Lock()

    def _dir(self, dataset_id: str, generation: int) -> Path:
        return self.root / dataset_id / str(generation)

    def build(
        self, dataset_id: str, generation: int, ids: Sequence[str], texts: Sequence[str]
    ) -> None:
        """Write the complete index of a dataset's generation (bm25s cannot update in place)."""
        target = self._dir(dataset_id, generation)
        staging = target.with_name(f".{generation}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        if ids:
            tokenizer = _tokenizer()
            tokens = tokenizer.tokenize(list(texts), show_progress=False, return_as="tuple")
            retriever = bm25s.BM25()
            retriever.index(tokens, show_progress=False)
            retriever.save(str(staging), show_progress=False)
            tokenizer.save_vocab(str(staging))
        (staging / "ids.json").write_text(json.dumps(list(ids)))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)

    def finalize(self, dataset_id: str, *, generation: int) -> None:
        dataset_dir = self.root / dataset_id
        if not dataset_dir.exists():
            return
        for child in dataset_dir.iterdir():
            if child.name.isdigit() and int(child.name) < generation:
                shutil.rmtree(child, ignore_errors=True)

    def abort(self, dataset_id: str, *, generation: int) -> None:
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
            directory = self._dir(dataset_id, generation)
            if not (directory / "ids.json").exists():
                return None
            ids = json.loads((directory / "ids.json").read_text())
            if not ids:
                return None
            tokenizer = _tokenizer()
            tokenizer.load_vocab(str(directory))
            retriever = bm25s.BM25.load(str(directory), show_progress=False)
            loaded = _Loaded(generation, retriever, tokenizer, ids)
            self._loaded[dataset_id] = loaded
            return loaded

    def search(self, query: str, k: int, generations: Mapping[str, int]) -> list[tuple[str, float]]:
        parts: list[list[tuple[str, float]]] = []
        for dataset_id, generation in sorted(generations.items()):
            loaded = self._get(dataset_id, generation)
            if loaded is None:
                continue
            # Query words the corpus never saw carry no BM25 weight; drop them up front.
            token_ids = loaded.tokenizer.tokenize(
                [query], update_vocab=False, show_progress=False, return_as="ids"
            )[0]
            if not token_ids:
                continue
            positions, scores = loaded.retriever.retrieve(
                [token_ids], k=min(k, len(loaded.ids)), show_progress=False, n_threads=1
            )
            parts.append(
                [
                    (loaded.ids[int(p)], float(s))
                    for p, s in zip(positions[0], scores[0], strict=True)
                    if s > 0
                ]
            )
        return merge_top_k(parts, k)

    def chunk_ids(self, dataset_id: str, generation: int) -> set[str]:
        path = self._dir(dataset_id, generation) / "ids.json"
        return set(json.loads(path.read_text())) if path.exists() else set()
