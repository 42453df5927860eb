"""Word segmenters for languages whose words are not separated by spaces.

Thai and Chinese are written without spaces between words; Vietnamese puts a space between
syllables, so one word, "thủ đô" (capital), is two space-separated syllables. Each has a
segmenter that ships its dictionary or model inside its wheel, so nothing is downloaded:

- Thai: PyThaiNLP's `newmm` (dictionary-based maximal matching, the library's default engine),
  in its "safe" variant, which bounds the time spent on long runs with many ambiguous breaks.
- Chinese: jieba's search-engine mode, which emits a long word and the shorter words inside it
  ("中华人民共和国" also gives "中华", "人民", "共和国"), so a query need not be segmented
  exactly as the document was.
- Vietnamese: pyvi's CRF model, which labels each syllable as beginning or continuing a word.

Each library costs import time (pyvi unpickles its model: ~1 s), so each loads on first use and
is then shared; once loaded all three are pure functions of their input, safe across threads.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

NEWMM = "newmm"
JIEBA = "jieba"
PYVI = "pyvi"
# No segmenter: unspaced scripts become character bigrams (`ranking.analysis`).
BIGRAMS = "bigrams"
# ISO 639-1 -> how its text is segmented. Every other language: BIGRAMS.
SEGMENTERS = {"th": NEWMM, "zh": JIEBA, "vi": PYVI}
# pyvi's label for a syllable that continues the word before it (the other is "B_W").
_CONTINUES_WORD = "I_W"

_lock = threading.Lock()


@cache
def _thai() -> Callable[[str], list[str]]:
    with _lock:
        # Never fetch corpora and never create ~/pythainlp-data: newmm's dictionary is inside
        # the wheel, and a server's home directory may be read-only. setdefault leaves an
        # operator's own choice alone.
        os.environ.setdefault("PYTHAINLP_OFFLINE", "1")
        os.environ.setdefault("PYTHAINLP_READ_ONLY", "1")
        from pythainlp.tokenize import word_tokenize

    def segment(run: str) -> list[str]:
        words: list[str] = word_tokenize(run, engine="newmm-safe", keep_whitespace=False)
        return words

    return segment


@cache
def _chinese() -> Callable[[str], list[str]]:
    with _lock:
        import jieba

        # jieba logs "Building prefix dict ..." at DEBUG level to stderr on its first cut.
        jieba.setLogLevel(logging.WARNING)
        tokenizer = jieba.Tokenizer()

    def segment(run: str) -> list[str]:
        return [word for word in tokenizer.cut_for_search(run) if word.strip()]

    return segment


@cache
def _vietnamese() -> Any:
    with _lock:
        from pyvi.ViTokenizer import ViTokenizer

        return ViTokenizer


def thai_words(run: str) -> list[str]:
    """The words of a run of Thai letters."""
    return _thai()(run)


def chinese_words(run: str) -> list[str]:
    """The words of a run of Han characters, long words followed by the words inside them."""
    return _chinese()(run)


def vietnamese_words(tokens: Sequence[str]) -> list[list[str]]:
    """Group syllables into words.

    `tokens` are the text's syllables and punctuation marks, in order: pyvi's model was trained
    on sequences with punctuation in them, and a word never spans one. Returns each word as its
    list of tokens (punctuation marks come back as words of their own).
    """
    if not tokens:
        return []
    model = _vietnamese()
    labels = model.model.predict([model.sent2features(list(tokens), False)])[0]
    words = [[tokens[0]]]
    for previous, token, label in zip(tokens, tokens[1:], labels[1:], strict=False):
        # pyvi's own rule (ViTokenizer.tokenize): never join across punctuation or numbers.
        if label == _CONTINUES_WORD and _joinable(previous) and _joinable(token):
            words[-1].append(token)
        else:
            words.append([token])
    return words


def _joinable(token: str) -> bool:
    return token[0].isalpha()
