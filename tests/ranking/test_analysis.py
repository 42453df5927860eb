"""Per-language lexical analysis: the terms BM25 sees."""

from __future__ import annotations

import pytest

from ranking.analysis import analyser_for, split_words


def terms(language: str, text: str) -> list[str]:
    tokenizer = analyser_for(language).tokenizer()
    return tokenizer.tokenize([text], return_as="string", show_progress=False)[0]  # type: ignore[no-any-return]


def test_words_keep_their_combining_marks() -> None:
    # Python's \w does not match vowel signs; a naive split breaks every such Hindi word.
    assert split_words("बर्लिन की जनसंख्या कितनी है?") == ["बर्लिन", "की", "जनसंख्या", "कितनी", "है"]
    assert split_words("كم عدد سكان القاهرة؟") == ["كم", "عدد", "سكان", "القاهرة"]


def test_unspaced_scripts_become_bigrams_and_latin_runs_stay_whole() -> None:
    assert split_words("北京是首都 iPhone手机") == [
        "北京",
        "京是",
        "是首",
        "首都",
        "iPhone",
        "手机",
    ]
    assert split_words("กรุงเทพ")[:2] == ["กร", "รุ"]


def test_short_tokens_are_dropped_but_numbers_kept() -> None:
    assert split_words("a p53 mutation in IL-6") == ["p53", "mutation", "in", "IL", "6"]


@pytest.mark.parametrize(
    ("language", "text", "expected"),
    [
        ("en", "The running dogs", ["run", "dog"]),
        ("de", "Wie viele Einwohner hat Berlin?", ["viel", "einwohn", "berlin"]),
        ("es", "¿Cuántos habitantes tiene Madrid?", ["cuant", "habit", "madr"]),
        ("ru", "Сколько людей живёт в Москве?", ["скольк", "люд", "живет", "москв"]),
    ],
)
def test_stemming_and_stop_words_follow_the_language(
    language: str, text: str, expected: list[str]
) -> None:
    assert terms(language, text) == expected


def test_unknown_language_is_plain_lowercased_words() -> None:
    assert analyser_for("xx").stemmer is None
    assert terms("xx", "Running Dogs") == ["running", "dogs"]
