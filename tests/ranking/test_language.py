from __future__ import annotations

import pytest

from ranking.language import (
    DETECT_SLICE,
    DOCUMENT_SAMPLE_CHARS,
    UNDETERMINED,
    detect_language,
    detect_languages,
    detect_query_language,
    normalise_language,
    settle_languages,
)

SAMPLES = [
    (
        "The committee recommends amoxicillin as first-line treatment for adults with pneumonia.",
        "en",
    ),
    (
        "Die Verteidigung der Panthers gab nur 308 Punkte ab und belegte den sechsten Platz.",
        "de",
    ),
    ("Сколько людей живёт в Москве и сколько из них работает в центре города?", "ru"),
    ("كم عدد سكان القاهرة في العام الماضي وفقا للإحصاءات الرسمية؟", "ar"),
    ("12345 67890", UNDETERMINED),
]


@pytest.mark.parametrize(("text", "language"), SAMPLES)
def test_documents_are_detected(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_a_batch_is_detected_in_order_across_slices() -> None:
    # More texts than one parallel call takes, in an order no slice boundary lines up with.
    batch = [SAMPLES[(i * 3) % len(SAMPLES)] for i in range(DETECT_SLICE * 2 + 7)]
    assert detect_languages([text for text, _ in batch]) == [language for _, language in batch]
    assert detect_languages([]) == []


def test_a_document_is_read_by_its_opening() -> None:
    german, english = SAMPLES[1][0], SAMPLES[0][0]
    opening = (german + " ") * (DOCUMENT_SAMPLE_CHARS // len(german) + 1)
    assert detect_language(opening + english * 40) == "de"


def test_rare_labels_in_a_source_are_settled_to_its_majority() -> None:
    detected = ["hi"] * 18 + ["mr", "und"]
    assert settle_languages(detected) == ["hi"] * 19 + ["und"]
    mixed = ["en"] * 5 + ["de"] * 5
    assert settle_languages(mixed) == mixed


@pytest.mark.parametrize(
    ("tag", "code"),
    [
        ("de", "de"),
        ("pt-BR", "pt"),
        ("EN", "en"),
        ("zh_Hant", "zh"),
        (" th ", "th"),
        ("und", "und"),
        (None, None),
        ("", None),
        ("english", None),
        ("xx", None),
        ("../../etc", None),  # the code names a directory: free text must not pass
    ],
)
def test_stated_languages_are_normalised_or_left_to_detection(
    tag: str | None, code: str | None
) -> None:
    assert normalise_language(tag) == code


def test_a_query_language_is_reported_only_when_the_detector_is_confident() -> None:
    assert detect_query_language("Wie viele Einwohner hat Berlin?") == "de"
    assert detect_query_language("กรุงเทพมหานครมีประชากรกี่คน") == "th"
    # Lingua reads this English query as French, but not confidently: better "und" than wrong.
    assert detect_query_language("p53 mutation cancer") == UNDETERMINED
    assert detect_query_language("12345") == UNDETERMINED
