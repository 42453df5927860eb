"""Lexical analysis per language: how text becomes BM25 terms.

Snowball stemmers (PyStemmer) where Snowball has one, bm25s' stop-word lists where it has one, and
a tokenizer that keeps combining marks inside words (Python's `\\w` does not match them, which
splits every Hindi or Arabic word with a vowel sign into fragments). Scripts written without
spaces (Chinese, Japanese, Thai, ...) are indexed as overlapping character bigrams, the standard
n-gram fallback (as Lucene's CJKBigramFilter does) when no segmenter is available.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from itertools import groupby

import bm25s.stopwords as stopword_lists
import Stemmer
from bm25s.tokenization import Tokenizer

# ISO 639-1 -> Snowball algorithm name.
SNOWBALL = {
    "ar": "arabic",
    "hy": "armenian",
    "eu": "basque",
    "ca": "catalan",
    "cs": "czech",
    "da": "danish",
    "nl": "dutch",
    "en": "english",
    "eo": "esperanto",
    "et": "estonian",
    "fi": "finnish",
    "fr": "french",
    "de": "german",
    "el": "greek",
    "hi": "hindi",
    "hu": "hungarian",
    "id": "indonesian",
    "ga": "irish",
    "it": "italian",
    "lt": "lithuanian",
    "ne": "nepali",
    "nb": "norwegian",
    "nn": "norwegian",
    "no": "norwegian",
    "fa": "persian",
    "pl": "polish",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sr": "serbian",
    "st": "sesotho",
    "es": "spanish",
    "sv": "swedish",
    "ta": "tamil",
    "tr": "turkish",
    "yi": "yiddish",
}
STOPWORDS: dict[str, tuple[str, ...] | str] = {
    "en": "en",
    "de": tuple(stopword_lists.STOPWORDS_GERMAN),
    "es": tuple(stopword_lists.STOPWORDS_SPANISH),
    "fr": tuple(stopword_lists.STOPWORDS_FRENCH),
    "it": tuple(stopword_lists.STOPWORDS_ITALIAN),
    "pt": tuple(stopword_lists.STOPWORDS_PORTUGUESE),
    "nl": tuple(stopword_lists.STOPWORDS_DUTCH),
    "da": tuple(stopword_lists.STOPWORDS_DANISH),
    "nb": tuple(stopword_lists.STOPWORDS_NORWEGIAN),
    "no": tuple(stopword_lists.STOPWORDS_NORWEGIAN),
    "sv": tuple(stopword_lists.STOPWORDS_SWEDISH),
    "ru": tuple(stopword_lists.STOPWORDS_RUSSIAN),
    "tr": tuple(stopword_lists.STOPWORDS_TURKISH),
}
# Scripts written without spaces between words: Thai, Lao, Myanmar, Khmer, Hiragana, Katakana,
# CJK ideographs (and their extensions and compatibility forms).
_UNSPACED = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]"
)


def _mark_ranges() -> str:
    """A regex class body of every combining mark (Unicode category M*)."""
    ranges: list[str] = []
    start = previous = -2
    for code in range(sys.maxunicode + 1):
        if unicodedata.category(chr(code)).startswith("M"):
            if code != previous + 1:
                if start >= 0:
                    ranges.append(_range(start, previous))
                start = code
            previous = code
    ranges.append(_range(start, previous))
    return "".join(ranges)


def _range(start: int, end: int) -> str:
    return f"\\U{start:08x}" if start == end else f"\\U{start:08x}-\\U{end:08x}"


_WORD = re.compile(rf"[\w{_mark_ranges()}]+")


def split_words(text: str) -> list[str]:
    """Words of `text`; runs of unspaced-script characters become overlapping bigrams
    ("iPhone手机" -> "iPhone", "手机")."""
    tokens: list[str] = []
    # NFKC folds compatibility forms (full-width Latin, ligatures, superscripts) into the
    # characters people type in queries.
    for word in _WORD.findall(unicodedata.normalize("NFKC", text)):
        if not _UNSPACED.search(word):
            if len(word) >= 2 or word.isdigit():
                tokens.append(word)
            continue
        for unspaced, group in groupby(word, key=lambda c: bool(_UNSPACED.match(c))):
            part = "".join(group)
            if not unspaced or len(part) == 1:
                tokens.append(part)
            else:
                tokens.extend(part[i : i + 2] for i in range(len(part) - 1))
    return tokens


@dataclass(frozen=True, slots=True)
class Analyser:
    language: str
    stemmer: str | None
    stopwords: tuple[str, ...] | str

    def tokenizer(self) -> Tokenizer:
        stem: Callable[[str], str] | None = None
        if self.stemmer is not None:
            stem = Stemmer.Stemmer(self.stemmer).stemWord
        return Tokenizer(
            lower=True,
            splitter=split_words,
            stopwords=list(self.stopwords) if isinstance(self.stopwords, tuple) else self.stopwords,
            stemmer=stem,
        )


@cache
def analyser_for(language: str) -> Analyser:
    """The analyser of a language; unknown languages get plain words, no stemming."""
    return Analyser(language, SNOWBALL.get(language), STOPWORDS.get(language, ()))
