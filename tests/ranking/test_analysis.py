"""Per-language lexical analysis: the terms BM25 sees."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ranking.analysis import SNOWBALL, STOPWORDS, analyser_for, split_words
from ranking.segmentation import BIGRAMS, JIEBA, NEWMM, PYVI, SEGMENTERS


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


def test_thai_is_split_into_dictionary_words_and_english_inside_it_stays_whole() -> None:
    # "I love the Thai language and the iPhone, price 3,000 baht"
    words = split_words("ผมรักภาษาไทยและ iPhone ราคา 3,000 บาท", NEWMM)
    assert words == ["ผม", "รัก", "ภาษาไทย", "และ", "iPhone", "ราคา", "3", "000", "บาท"]
    # Without the segmenter the same text is bigrams, which a one-word query matches poorly.
    assert "ภาษาไทย" not in split_words("ผมรักภาษาไทย")


def test_chinese_gives_words_and_the_words_inside_long_ones() -> None:
    assert split_words("我爱北京天安门", JIEBA) == ["我", "爱", "北京", "天安", "天安门"]
    words = split_words("中华人民共和国成立了", JIEBA)
    assert {"中华", "人民", "共和国", "中华人民共和国"} <= set(words)
    # Latin product names and kana stay out of jieba: words, and bigrams for the kana.
    assert split_words("iPhone手机 ひらがな", JIEBA) == ["iPhone", "手机", "ひら", "らが", "がな"]


def test_vietnamese_compounds_come_with_their_syllables() -> None:
    words = split_words("Hà Nội là thủ đô của Việt Nam.", PYVI)
    assert words == [
        "Hà_Nội", "Hà", "Nội", "là", "thủ_đô", "thủ", "đô", "của", "Việt_Nam", "Việt", "Nam"
    ]  # fmt: skip
    # A word never spans punctuation: "Nam" and "Thành" are in different sentences.
    assert "Nam_Thành" not in split_words("Việt Nam. Thành phố lớn.", PYVI)


@pytest.mark.parametrize(
    ("language", "segmenter"),
    [
        ("th", NEWMM),
        ("zh", JIEBA),
        ("vi", PYVI),
        ("ja", BIGRAMS),
        ("lo", BIGRAMS),
        ("und", BIGRAMS),
    ],
)
def test_each_language_gets_its_segmenter_and_the_rest_bigrams(
    language: str, segmenter: str
) -> None:
    assert analyser_for(language).segmenter == segmenter


def test_a_query_matches_a_segmented_document_through_the_tokenizer() -> None:
    # "Chiang Mai has many temples" / query "temple" (วัด): one word in both.
    assert "วัด" in terms("th", "เชียงใหม่มีวัดมากมาย")
    assert terms("th", "วัด") == ["วัด"]


# Every language with its own analysis, "und", and one we know nothing of.
MAPPED_LANGUAGES = sorted(set(SNOWBALL) | set(STOPWORDS) | set(SEGMENTERS) | {"und", "xx"})
# Fragments that code-mixed text brings together: Thai (with its digits and a Lao word), Han,
# kana, Hangul, Latin with accents and ligatures, Vietnamese, Turkish dotted I, full-width
# digits, Arabic and Hebrew (RTL) with digits and direction marks, Devanagari with vowel signs,
# lone combining marks, emoji with ZWJ and skin tones, zero-width space, BOM, punctuation.
WORDS = (
    "ภาษาไทย กรุงเทพฯ ๑๒๓ ສະບາຍດີ 北京 中华人民共和国 手机 ひらがな カタカナ 한국어 iPhone 15 Pro "
    "café naïve ﬁnal Hà Nội thủ đô İstanbul straße ０１２ العربية ١٢٣ עברית 42 बर्लिन जनसंख्या"
)
MARKS = ["\u0301", "\u0e31", "\u0940", "\u200f", "\u200e", "\u200d", "\u200b", "\ufeff"]
EMOJI = ["\U0001f600", "\U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467"]
PUNCTUATION = [" ", "\n", "\t", ".", ",", "-", "_", "'", "。", "，", "!", "?", "๏"]
MIXED = st.lists(st.sampled_from([*WORDS.split(), *MARKS, *EMOJI, *PUNCTUATION]), max_size=30).map(
    "".join
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(language=st.sampled_from(MAPPED_LANGUAGES), text=st.one_of(st.text(max_size=80), MIXED))
def test_analysis_of_any_text_in_any_language_never_raises(language: str, text: str) -> None:
    words = analyser_for(language).split(text)
    assert all(word and not any(c.isspace() for c in word) for word in words)
    terms(language, text)  # stop words and stemming too


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(language=st.sampled_from(["th", "zh", "vi", "ja", "und"]), text=MIXED)
def test_segmenters_take_code_mixed_text(language: str, text: str) -> None:
    words = analyser_for(language).split(text)
    assert all(word and not any(c.isspace() for c in word) for word in words)
