"""Language of documents, decided once at ingest, offline, with lingua.

Documents are long enough for reliable detection; queries are not ("p53 mutation cancer" reads as
French), so ranking never guesses a query's language: it uses the language of each *chunk*.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

UNDETERMINED = "und"  # ISO 639-2 code for "undetermined"
# A detected language this rare within one source is more likely a misdetection than a real
# minority language: on XQuAD-R, 8% of Hindi sentences read as Marathi and 2% of English ones
# as Latin. Relabelling costs a true minority only its stemmer; a false one costs it its IDF.
MIN_SHARE = 0.15

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


def detect_language(text: str) -> str:
    """ISO 639-1 code of `text`'s language, or "und" when it cannot be told."""
    detected = _get_detector().detect_language_of(text[:2_000])
    return UNDETERMINED if detected is None else str(detected.iso_code_639_1.name).lower()


def settle_languages(detected: Sequence[str], *, min_share: float = MIN_SHARE) -> list[str]:
    """Relabel languages that are rare within one source as that source's majority language."""
    counts = Counter(lang for lang in detected if lang != UNDETERMINED)
    if not counts:
        return list(detected)
    majority = counts.most_common(1)[0][0]
    total = sum(counts.values())
    rare = {lang for lang, n in counts.items() if n / total < min_share}
    return [majority if lang in rare else lang for lang in detected]
