"""Lexical analysis per language: how text becomes BM25 terms.

Snowball stemmers (PyStemmer) where Snowball has one, bm25s' stop-word lists where it has one, and
a tokenizer that keeps combining marks inside words (Python's `\\w` does not match them, which
splits every Hindi or Arabic word with a vowel sign into fragments). Scripts written without
spaces are split into words where a segmenter for the text's language exists (Thai, Chinese; and
Vietnamese, whose spaces separate syllables: `ranking.segmentation`), and otherwise (Japanese, Lao,
Khmer, Myanmar, or text whose language is unknown) indexed as overlapping character bigrams, the
standard n-gram fallback (as Lucene's CJKBigramFilter does).

Documents and queries of one BM25 sub-index are analysed alike, so what matters most is that a
query is split the way the documents were; which analysis built an index is recorded with it
(`ranking.lexical`).
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

from ranking.segmentation import (
    BIGRAMS,
    JIEBA,
    NEWMM,
    PYVI,
    SEGMENTERS,
    chinese_words,
    thai_words,
    vietnamese_words,
)

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


_MARKS = _mark_ranges()
_WORD = re.compile(rf"[\w{_MARKS}]+")
# A word, or one character of punctuation or symbol: the tokens pyvi's model reads.
_TOKEN = re.compile(rf"[\w{_MARKS}]+|[^\w\s]")
# The scripts the unspaced-script segmenters read: Thai letters, and CJK ideographs.
_THAI = re.compile("[\u0e00-\u0e7f]")
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")
_SEGMENTED_SCRIPTS: dict[str, tuple[re.Pattern[str], Callable[[str], list[str]]]] = {
    NEWMM: (_THAI, thai_words),
    JIEBA: (_HAN, chinese_words),
}


def split_words(text: str, segmenter: str = BIGRAMS) -> list[str]:
    """Words of `text`. Runs of unspaced-script characters are split by `segmenter` where it
    reads their script, and otherwise become overlapping bigrams ("iPhone手机" -> "iPhone",
    "手机"); `segmenter` is one of `ranking.segmentation`'s names."""
    # NFKC folds compatibility forms (full-width Latin, ligatures, superscripts) into the
    # characters people type in queries.
    normalised = unicodedata.normalize("NFKC", text)
    if segmenter == PYVI:
        return _vietnamese_terms(normalised)
    script = _SEGMENTED_SCRIPTS.get(segmenter)
    return [term for word in _WORD.findall(normalised) for term in _word_terms(word, script)]


def _word_terms(
    word: str, script: tuple[re.Pattern[str], Callable[[str], list[str]]] | None
) -> list[str]:
    if not _UNSPACED.search(word):
        return [word] if len(word) >= 2 or word.isdigit() else []
    terms: list[str] = []
    for unspaced, group in groupby(word, key=lambda c: bool(_UNSPACED.match(c))):
        part = "".join(group)
        if not unspaced:
            terms.append(part)
        elif script is not None and script[0].search(part):
            pattern, segment = script
            # Only the segmenter's own script goes to it: Lao in a Thai run, or kana in a
            # Chinese one, still becomes bigrams.
            for own, run in groupby(part, key=lambda c: bool(pattern.match(c))):
                chars = "".join(run)
                terms.extend(segment(chars) if own else _bigrams(chars))
        else:
            terms.extend(_bigrams(part))
    return terms


def _bigrams(part: str) -> list[str]:
    return [part] if len(part) == 1 else [part[i : i + 2] for i in range(len(part) - 1)]


def _vietnamese_terms(text: str) -> list[str]:
    """Each syllable as a term, plus each compound word its syllables form ("thủ_đô")."""
    terms: list[str] = []
    for word in vietnamese_words(_TOKEN.findall(text)):
        if len(word) > 1:
            terms.append("_".join(word))
        for syllable in word:
            if _WORD.fullmatch(syllable):
                terms.extend(_word_terms(syllable, None))
    return terms


@dataclass(frozen=True, slots=True)
class Analyser:
    language: str
    stemmer: str | None
    stopwords: tuple[str, ...] | str
    segmenter: str = BIGRAMS

    def split(self, text: str) -> list[str]:
        return split_words(text, self.segmenter)

    def tokenizer(self) -> Tokenizer:
        stem: Callable[[str], str] | None = None
        if self.stemmer is not None:
            stem = Stemmer.Stemmer(self.stemmer).stemWord
        return Tokenizer(
            lower=True,
            splitter=self.split,
            stopwords=list(self.stopwords) if isinstance(self.stopwords, tuple) else self.stopwords,
            stemmer=stem,
        )


@cache
def analyser_for(language: str, segmenter: str | None = None) -> Analyser:
    """The analyser of a language; unknown languages get plain words, no stemming.

    `segmenter` overrides the language's own (`ranking.segmentation.SEGMENTERS`): an index is
    queried with the analysis it was built with, even after the default for its language changes.
    """
    chosen = SEGMENTERS.get(language, BIGRAMS) if segmenter is None else segmenter
    return Analyser(language, SNOWBALL.get(language), STOPWORDS.get(language, ()), chosen)
