"""RSL 1.0 import and export: what maps, what is refused and why, and round trips."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from contracts import InvalidInput, Licence
from ledger.rsl import ImportTerms, licence_from_rsl, licence_to_rsl

TERMS = ImportTerms(licence_id="rsl-import", owner_share_bps=7000, snippet_cap_chars=500)

# A publisher's own license.xml, as RSL 1.0 writes it: no Fairshare extension.
PUBLISHER = b"""<?xml version="1.0" encoding="UTF-8"?>
<rsl xmlns="https://rslstandard.org/rsl">
  <content url="/guidelines/*">
    <copyright type="organization">Example Medical Society</copyright>
    <license>
      <permits type="usage">ai-input search</permits>
      <prohibits type="usage">ai-train</prohibits>
      <permits type="user">commercial education</permits>
      <permits type="geo">SG,MY</permits>
      <prohibits type="geo">us</prohibits>
      <payment type="use"><amount currency="usd">0.0025</amount></payment>
      <legal type="warranty">ownership authority</legal>
    </license>
  </content>
</rsl>
"""


def rsl(licence_body: str, content_attrs: str = "") -> bytes:
    return (
        f'<rsl xmlns="https://rslstandard.org/rsl"><content url="/" {content_attrs}>'
        f"<license>{licence_body}</license></content></rsl>"
    ).encode()


def test_publisher_licence_maps_every_term() -> None:
    licence = licence_from_rsl(PUBLISHER, currency="EUR", terms=TERMS)
    assert licence.id == "rsl-import" and licence.name == "rsl-import"
    assert (licence.currency, licence.price_per_hit_micros) == ("USD", 2500)
    assert licence.permits == ["rag", "display", "summarize"]
    assert licence.prohibits == ["train"]
    assert licence.territories == ["MY", "SG"]
    assert licence.excluded_territories == ["US"]
    assert licence.attribution == "Example Medical Society"  # from <copyright>
    assert (licence.owner_share_bps, licence.snippet_cap_chars) == (7000, 500)
    assert licence.valid_from is None and licence.valid_until is None


def test_without_permits_every_use_not_prohibited_is_permitted() -> None:
    licence = licence_from_rsl(
        rsl('<prohibits type="usage">ai-train</prohibits><payment type="free"/>'),
        currency="EUR",
        terms=msgspec.structs.replace(TERMS, attribution="Example"),
    )
    assert licence.price_per_hit_micros == 0 and licence.currency == "EUR"
    assert [u for u in ("rag", "display", "summarize", "train") if licence.allows_use(u)] == [
        "rag",
        "display",
        "summarize",
    ]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (rsl("", 'server="https://ls.example"'), "License Server"),
        (rsl("", 'encrypted="true"'), "encrypted"),
        (
            rsl('<payment type="subscription"><amount currency="USD">9</amount></payment>'),
            "per-hit",
        ),
        (rsl('<payment type="use"><custom>https://x.example/deal</custom></payment>'), "amount"),
        (
            rsl('<payment type="use"><amount currency="USD">0.0000001</amount></payment>'),
            "6 decimals",
        ),
        (rsl('<payment type="use"><amount currency="USD">-1</amount></payment>'), "non-negative"),
        (rsl('<payment type="use"><amount>1</amount></payment>'), "currency"),
        (rsl('<prohibits type="usage">ai-index</prohibits>'), "indexing"),
        (rsl('<permits type="usage">ai-everything</permits>'), "unknown usage"),
        (rsl('<permits type="user">non-commercial</permits>'), "commercial"),
        (rsl('<prohibits type="user">commercial</prohibits>'), "commercial"),
        (rsl('<permits type="geo">Singapore</permits>'), "alpha-2"),
        (rsl('<permits type="time">2026</permits>'), "not an RSL 1.0 rule"),
        (b'<rsl xmlns="https://example.com/other"/>', "root element"),
        (b"<rsl", "well-formed"),
        (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
            b'<rsl xmlns="https://rslstandard.org/rsl">&b;</rsl>',
            "without DTDs or entities",
        ),
        (
            b'<rsl xmlns="https://rslstandard.org/rsl"><content url="/a"><license/></content>'
            b'<content url="/b"><license/></content></rsl>',
            "one licence per file",
        ),
    ],
)
def test_what_does_not_map_is_refused_with_the_reason(document: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        licence_from_rsl(document, currency="USD", terms=TERMS)


def test_terms_rsl_cannot_state_must_be_given() -> None:
    with pytest.raises(InvalidInput, match="owner_share_bps, snippet_cap_chars, attribution"):
        licence_from_rsl(rsl(""), currency="USD", terms=ImportTerms(licence_id="x"))


WINDOWED = Licence(
    id="clinical-2027",
    name="Clinical 2027",
    currency="USD",
    price_per_hit_micros=1234,
    owner_share_bps=6500,
    snippet_cap_chars=320,
    attribution="© Example Medical Society, used under licence",
    permits=["rag", "summarize", "train"],
    prohibits=["display"],
    territories=["DE", "FR"],
    excluded_territories=[],
    valid_from=datetime(2027, 1, 1, tzinfo=UTC),
    valid_until=datetime(2028, 1, 1, tzinfo=UTC),
    processing_regions=["eu", "za"],
)


@pytest.mark.parametrize(
    "licence",
    [
        WINDOWED,
        msgspec.structs.replace(
            WINDOWED,
            price_per_hit_micros=0,
            permits=["rag", "display", "summarize"],
            prohibits=[],
            territories=None,
            excluded_territories=["RU"],
            valid_from=None,
            valid_until=None,
            processing_regions=None,
        ),
    ],
)
def test_export_then_import_gives_the_same_licence(licence: Licence) -> None:
    document = licence_to_rsl(licence, content_url="/v1/datasets/clinical")
    assert b'xmlns="https://rslstandard.org/rsl"' in document
    assert licence_from_rsl(document, currency="USD") == licence.canonical()


def test_export_writes_rsl_tokens_a_reader_without_our_extension_understands() -> None:
    document = licence_to_rsl(WINDOWED).decode()
    assert '<permits type="usage">ai-input,ai-train</permits>' in document
    assert '<prohibits type="usage">search</prohibits>' in document
    assert '<permits type="geo">DE,FR</permits>' in document
    assert '<amount currency="USD">0.001234</amount>' in document


def test_export_refuses_what_rsl_cannot_say() -> None:
    split = msgspec.structs.replace(WINDOWED, permits=["rag"], prohibits=["summarize"])
    with pytest.raises(InvalidInput, match="ai-input"):
        licence_to_rsl(split)


def test_import_flags_override_the_extension() -> None:
    document = licence_to_rsl(WINDOWED)
    licence = licence_from_rsl(
        document, currency="USD", terms=ImportTerms(licence_id="clinical-2027b", name="B")
    )
    assert (licence.id, licence.name, licence.owner_share_bps) == ("clinical-2027b", "B", 6500)


def test_licence_rules() -> None:
    conflicting = msgspec.structs.replace(WINDOWED, permits=["rag", "train"], prohibits=["train"])
    assert conflicting.allows_use("rag") and not conflicting.allows_use("train")
    inside = datetime(2027, 6, 1, tzinfo=UTC)
    assert WINDOWED.refusal(use="rag", territory="DE", at=inside) is None
    assert "not in force" in str(
        WINDOWED.refusal(use="rag", territory="DE", at=WINDOWED.valid_until)
    )  # type: ignore[arg-type]
    assert "display" in str(WINDOWED.refusal(use="display", territory="DE", at=inside))
    assert "unknown territory" in str(WINDOWED.refusal(use="rag", territory=None, at=inside))
    assert "territory SG" in str(WINDOWED.refusal(use="rag", territory="SG", at=inside))
    backwards = msgspec.to_builtins(WINDOWED) | {"valid_until": "2026-01-01T00:00:00Z"}
    with pytest.raises(msgspec.ValidationError, match="valid_until must be later"):
        msgspec.convert(backwards, Licence)
