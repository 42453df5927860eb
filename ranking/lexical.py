"""BM25 lexical index (bm25s): one immutable index per (dataset, generation, language).

Each language of a dataset gets its own sub-index, analysed with that language's stemmer and
stop words (`ranking.analysis`); a query is analysed once per sub-index it searches. Titles are
weighted by repetition, the usual cheap approximation of BM25F's field weights.

Each sub-index records how its text was segmented (`analysis.json`), and is queried the same way
even after the default analysis of its language changes (Thai and Chinese were indexed as
character bigrams before they had segmenters): a query split differently from its documents
would match nothing until the dataset is re-ingested.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
from bm25s.tokenization import Tokenizer
from numpy.typing import NDArray

from ranking.analysis import analyser_for
from ranking.loaded import LoadedGenerations
from ranking.removal import Removed, remove_tree
from ranking.segmentation import BIGRAMS
from ranking.vectors import merge_top_k

# Fit on SciFact train qrels (bench/tune_fusion.py). Title terms count this many times in a
# chunk's BM25 text (1 is plain concatenation); k1 and b are the usual BM25 saturation and
# length-normalisation parameters (bm25s defaults: 1.5 and 0.75).
TITLE_WEIGHT = 3
BM25_K1 = 0.9
BM25_B = 0.5
ANALYSIS_FILE = "analysis.json"
# What a sub-index without ANALYSIS_FILE was built with: the only analysis there was then.
LEGACY_SEGMENTER = BIGRAMS


@dataclass(frozen=True, slots=True)
class LexicalDoc:
    chunk_id: str
    title: str
    text: str
    language: str


def bm25_text(title: str, text: str, title_weight: int = TITLE_WEIGHT) -> str:
    return "\n".join([title] * title_weight + [text]) if title else text


def top_k(scores: NDArray[np.floating[Any]], k: int) -> NDArray[np.intp]:
    """Positions of the `k` best positive scores, best first (ties by position).

    Only the documents that share a word with the query score above 0, a few percent of a
    large corpus: selecting among those instead of the whole score array (as bm25s's `retrieve`
    does) took BM25 at 1M chunks from ~45 ms to ~5 ms a query (bench/scale.py).
    """
    matched = np.flatnonzero(scores > 0)  # ascending positions
    if matched.size > k:
        kept = scores[matched]
        kth = -np.partition(-kept, k - 1)[k - 1]  # the k-th best score
        better = matched[kept > kth]
        tied = matched[kept == kth][: k - better.size]  # the lowest positions among the ties
        matched = np.concatenate([better, tied])
    return matched[np.lexsort((matched, -scores[matched]))]


class _SubIndex:
    __slots__ = ("ids", "retriever", "tokenizer")

    def __init__(self, retriever: bm25s.BM25, tokenizer: Tokenizer, ids: list[str]) -> None:
        self.retriever = retriever
        self.tokenizer = tokenizer
        self.ids = ids


class _Loaded:
    __slots__ = ("generation", "languages", "parts")

    def __init__(self, generation: int, parts: dict[str, _SubIndex]) -> None:
        self.generation = generation
        self.parts = parts
        self.languages = {cid: lang for lang, part in parts.items() for cid in part.ids}


class BM25Index:
    """Layout: `<root>/<dataset>/<generation>/<language>/` with bm25s files, vocab and ids."""

    name = "bm25"

    def __init__(
        self,
        root: Path,
        *,
        title_weight: int = TITLE_WEIGHT,
        k1: float = BM25_K1,
        b: float = BM25_B,
    ) -> None:
        self.root = root
        self.title_weight = title_weight
        self.k1 = k1
        self.b = b
        self._loaded = LoadedGenerations(self._load)

    def _dir(self, dataset_id: str, generation: int) -> Path:
        return self.root / dataset_id / str(generation)

    def build(self, dataset_id: str, generation: int, docs: Sequence[LexicalDoc]) -> None:
        """Write the complete index of a dataset's generation (bm25s cannot update in place)."""
        target = self._dir(dataset_id, generation)
        staging = target.with_name(f".{generation}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        by_language: dict[str, list[LexicalDoc]] = defaultdict(list)
        for doc in docs:
            by_language[doc.language].append(doc)
        for language, group in sorted(by_language.items()):
            part = staging / language
            part.mkdir()
            analyser = analyser_for(language)
            tokenizer = analyser.tokenizer()
            texts = [bm25_text(d.title, d.text, self.title_weight) for d in group]
            tokens = tokenizer.tokenize(texts, show_progress=False, return_as="tuple")
            retriever = bm25s.BM25(k1=self.k1, b=self.b)
            retriever.index(tokens, show_progress=False)
            retriever.save(str(part), show_progress=False)
            tokenizer.save_vocab(str(part))
            (part / "ids.json").write_text(json.dumps([d.chunk_id for d in group]))
            (part / ANALYSIS_FILE).write_text(json.dumps({"segmenter": analyser.segmenter}))
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

    def drop(self, dataset_id: str) -> Removed:
        """Delete every file of the dataset and unload it; counts the BM25 documents (chunk
        ids over all its languages) it held. Files go first, so nothing can load them again."""
        removed = remove_tree(self.root / dataset_id)
        self.forget(dataset_id)
        return removed

    def forget(self, dataset_id: str) -> bool:
        """Unload the dataset, if loaded: its vocabulary and term matrices are its words."""
        return self._loaded.forget(dataset_id)

    def retain(self, dataset_ids: Collection[str]) -> list[str]:
        """Unload every dataset but these; returns the datasets unloaded."""
        return self._loaded.retain(dataset_ids)

    def _load(self, dataset_id: str, generation: int) -> _Loaded | None:
        directory = self._dir(dataset_id, generation)
        if not directory.is_dir():
            return None
        parts: dict[str, _SubIndex] = {}
        for part in sorted(p for p in directory.iterdir() if p.is_dir()):
            tokenizer = analyser_for(part.name, _segmenter_of(part)).tokenizer()
            tokenizer.load_vocab(str(part))
            retriever = bm25s.BM25.load(str(part), show_progress=False)
            ids = json.loads((part / "ids.json").read_text())
            parts[part.name] = _SubIndex(retriever, tokenizer, ids)
        return _Loaded(generation, parts)

    def search(
        self,
        query: str,
        k: int,
        generations: Mapping[str, int],
        languages: Collection[str] | None = None,
    ) -> list[tuple[str, float]]:
        """The `k` best chunks for `query`; with `languages`, only chunks in those languages."""
        results: list[list[tuple[str, float]]] = []
        for dataset_id, generation in sorted(generations.items()):
            loaded = self._loaded.get(dataset_id, generation)
            if loaded is None:
                continue
            for language, part in loaded.parts.items():
                if languages is not None and language not in languages:
                    continue
                # Query words the corpus never saw carry no BM25 weight; drop them up front.
                # The streaming form, because `tokenize` builds a (disabled) tqdm bar per call:
                # ~0.1 ms of the GIL per search.
                token_ids = next(part.tokenizer.streaming_tokenize([query], update_vocab=False))
                if not token_ids:
                    continue
                scores = part.retriever.get_scores_from_ids(token_ids)
                results.append([(part.ids[int(p)], float(scores[p])) for p in top_k(scores, k)])
        return merge_top_k(results, k)

    def languages_of(
        self, chunk_ids: Sequence[str], generations: Mapping[str, int]
    ) -> dict[str, str]:
        """Chunk id -> language, for those of `chunk_ids` these dataset generations hold."""
        maps = [
            loaded.languages
            for dataset_id, generation in generations.items()
            if (loaded := self._loaded.get(dataset_id, generation)) is not None
        ]
        found: dict[str, str] = {}
        for chunk_id in chunk_ids:
            for languages in maps:
                if chunk_id in languages:
                    found[chunk_id] = languages[chunk_id]
                    break
        return found

    def language_counts(self, generations: Mapping[str, int]) -> Counter[str]:
        """Language -> how many chunks of these dataset generations are in it."""
        counts: Counter[str] = Counter()
        for dataset_id, generation in generations.items():
            loaded = self._loaded.get(dataset_id, generation)
            if loaded is not None:
                counts.update({lang: len(part.ids) for lang, part in loaded.parts.items()})
        return counts

    def chunk_ids(self, dataset_id: str, generation: int) -> set[str]:
        loaded = self._loaded.get(dataset_id, generation)
        return set(loaded.languages) if loaded is not None else set()


def _segmenter_of(part: Path) -> str:
    recorded = part / ANALYSIS_FILE
    if not recorded.is_file():
        return LEGACY_SEGMENTER
    segmenter: str = json.loads(recorded.read_text())["segmenter"]
    return segmenter
