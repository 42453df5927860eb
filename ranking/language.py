"""Language of documents, decided once at ingest, offline, with lingua.

Documents are long enough for reliable detection; queries are not ("p53 mutation cancer" reads as
French), so a query's language (`detect_query_language`) is "und" unless lingua is confident, and
ranking leans on it in one way only: fusion lets an embedder that reads the query vote on chunks
in other languages (`ranking.pipeline`). What each chunk is analysed and weighed as is the
language of its document.
"""

from __future__ import annotations

import functools
import re
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from contracts.languages import LANGUAGE_CODES, UNDETERMINED

__all__ = [
    "UNDETERMINED",
    "detect_language",
    "detect_languages",
    "detect_query_language",
    "normalise_language",
    "settle_languages",
]
# A detected language this rare within one source is more likely a misdetection than a real
# minority language: on XQuAD-R, 8% of Hindi sentences read as Marathi and 2% of English ones
# as Latin. Relabelling costs a true minority only its stemmer; a false one costs it its IDF.
MIN_SHARE = 0.15
# Lingua's top guess is wrong for 24% of SciFact's (English) train queries; keeping only guesses
# it is at least this confident in brings that to 10% and still labels 63% of them
# (bench/query_language.py, which also prints the XQuAD-R test figures; they did not set this).
QUERY_MIN_CONFIDENCE = 0.95

_detector: Any = None
_lock = threading.Lock()


def _get_detector() -> Any:
    global _detector
    with _lock:
        if _detector is None:
            from lingua import LanguageDetectorBuilder

            # Low-accuracy mode uses trigram models only: ~150 MB instead of >1 GB, and on
            # document-length text its answers match the full models'.
            _detector = (
                LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()
            )
        return _detector


# Documents are detected on their opening characters. lingua's cost grows with the text (a
# SciFact abstract: 4.0 ms at 2,000 characters, 2.8 ms at 1,000) and its answer does not: on
# the first 1,000 SciFact abstracts and on 1,063 CACM, CISI, Cranfield and NPL documents longer
# than 1,000 characters, both lengths gave the same language every time (of XQuAD-R's five
# documents that long, one differed).
DOCUMENT_SAMPLE_CHARS = 1_000


# Texts per call of lingua's parallel detection: it holds the GIL for the whole call (~0.15 s for
# 256 SciFact abstracts on 2 cores), so Ctrl-C during an ingest lands between two calls.
DETECT_SLICE = 256


def detect_language(text: str) -> str:
    """ISO 639-1 code of `text`'s language, or "und" when it cannot be told."""
    return detect_languages([text])[0]


def detect_languages(texts: Sequence[str]) -> list[str]:
    """`detect_language` of each of `texts`, on every core at once (the same answers as one by
    one: lingua's parallel call runs the same detection per text)."""
    detector = _get_detector()
    found: list[str] = []
    for start in range(0, len(texts), DETECT_SLICE):
        sample = [text[:DOCUMENT_SAMPLE_CHARS] for text in texts[start : start + DETECT_SLICE]]
        found += [
            UNDETERMINED if detected is None else str(detected.iso_code_639_1.name).lower()
            for detected in detector.detect_languages_in_parallel_of(sample)
        ]
    return found


def normalise_language(tag: str | None) -> str | None:
    """A source's language tag as the code the indexes use ("pt-BR", "PT", "pt_BR" -> "pt");
    None when it is missing or names no language we know ("english", "??"), so it is detected.

    The code names a BM25 sub-index directory and selects the analyser, so nothing else may
    pass: a tag is free text from the publisher.
    """
    if tag is None:
        return None
    primary = re.split(r"[-_]", tag.strip().lower(), maxsplit=1)[0]
    return primary if primary in LANGUAGE_CODES else None


# lingua scores all 75 of its languages for every query: ~0.45 ms holding the GIL, a fifth of the
# Python time of a search under load (README, Performance). Agents repeat queries, so answers
# are remembered; the language of a text never changes, so nothing invalidates them.
QUERY_LANGUAGE_CACHE = 8_192


def detect_query_language(query: str, *, min_confidence: float = QUERY_MIN_CONFIDENCE) -> str:
    """ISO 639-1 code of a query's language when lingua's confidence in it reaches
    `min_confidence`, else "und"."""
    return _query_language(query[:2_000], min_confidence)


@functools.lru_cache(maxsize=QUERY_LANGUAGE_CACHE)
def _query_language(query: str, min_confidence: float) -> str:
    confidences = _get_detector().compute_language_confidence_values(query)
    if not confidences or confidences[0].value < min_confidence:
        return UNDETERMINED
    return str(confidences[0].language.iso_code_639_1.name).lower()


def settle_languages(detected: Sequence[str], *, min_share: float = MIN_SHARE) -> list[str]:
    """Relabel languages that are rare within one source as that source's majority language."""
    counts = Counter(lang for lang in detected if lang != UNDETERMINED)
    if not counts:
        return list(detected)
    majority = counts.most_common(1)[0][0]
    total = sum(counts.values())
    rare = {lang for lang, n in counts.items() if n / total < min_share}
    return [majority if lang in rare else lang for lang in detected]
