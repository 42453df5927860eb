from __future__ import annotations

import pytest

from ranking.language import UNDETERMINED, detect_language, settle_languages


@pytest.mark.parametrize(
    ("text", "language"),
    [
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
    ],
)
def test_documents_are_detected(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_nothing_to_detect_is_undetermined() -> None:
    assert detect_language("12345 67890") == UNDETERMINED


def test_rare_labels_in_a_source_are_settled_to_its_majority() -> None:
    detected = ["hi"] * 18 + ["mr", "und"]
    assert settle_languages(detected) == ["hi"] * 19 + ["und"]
    mixed = ["en"] * 5 + ["de"] * 5
    assert settle_languages(mixed) == mixed
