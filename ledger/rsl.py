"""RSL 1.0 (Really Simple Licensing, https://rslstandard.org/rsl) licence import and export.

RSL states what automated systems may do with content (`<permits>`/`<prohibits>` of usage,
user and geo) and how they pay (`<payment>`). Fairshare's licence says a little less in some
places and more in others, so the mapping is explicit and anything that does not map is refused
with a message saying why; nothing is dropped silently.

| RSL 1.0                                   | Fairshare licence                           |
|-------------------------------------------|---------------------------------------------|
| usage `all`                               | rag, display, summarize, train              |
| usage `ai-all`                            | rag, summarize, train                       |
| usage `ai-input`                          | rag and summarize (RSL has one token)       |
| usage `ai-train`                          | train                                       |
| usage `search`                            | display                                     |
| usage `ai-index`                          | implied (we serve from indexes); prohibited: refused |
| geo (ISO 3166-1 alpha-2)                  | territories / excluded_territories          |
| user: must allow `commercial`             | (our customers are businesses)              |
| `<payment type="use">` + `<amount>`       | price_per_hit_micros, currency              |
| `<payment type="free">` / `"attribution">`| price 0                                     |
| `<copyright>` text                        | attribution, when no other is given         |

Terms RSL has no element for (licence id and name, owner share, snippet cap, attribution text,
validity window, processing regions) travel in a `<fs:terms>` element of Fairshare's own
namespace inside `<license>`, the way RSL extensions such as OpenRSL add theirs; readers that do
not know the namespace ignore it. A file without it (a publisher's own license.xml) needs those
terms given on import.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import defusedxml.ElementTree as SafeET
import msgspec
from defusedxml import DefusedXmlException

from contracts import InvalidInput, Licence
from contracts.catalog import USES, Use
from contracts.money import MICROS_PER_UNIT

RSL_NAMESPACE = "https://rslstandard.org/rsl"
FS_NAMESPACE = "https://fairshare.dev/ns/rsl-terms"
MEDIA_TYPE = "application/rsl+xml"
_R = f"{{{RSL_NAMESPACE}}}"
_F = f"{{{FS_NAMESPACE}}}"
MAX_RSL_BYTES = 256 * 1024

# RSL usage token -> the Fairshare uses it covers.
USAGE_TOKENS: dict[str, tuple[Use, ...]] = {
    "all": ("rag", "display", "summarize", "train"),
    "ai-all": ("rag", "summarize", "train"),
    "ai-input": ("rag", "summarize"),
    "ai-train": ("train",),
    "search": ("display",),
    "ai-index": (),
}
USER_TOKENS = frozenset({"commercial", "non-commercial", "education", "government", "personal"})
FREE_PAYMENTS = frozenset({"free", "attribution"})
PER_HIT_PAYMENT = "use"


class ImportTerms(msgspec.Struct, frozen=True, kw_only=True):
    """Terms given on import; each overrides the file's `<fs:terms>` and fills what it lacks."""

    licence_id: str | None = None
    name: str | None = None
    owner_share_bps: int | None = None
    snippet_cap_chars: int | None = None
    attribution: str | None = None


def _fail(message: str) -> InvalidInput:
    return InvalidInput(f"RSL: {message}")


def _tokens(text: str | None) -> list[str]:
    """RSL lists are written both comma- and space-separated."""
    return [t for t in (text or "").replace(",", " ").split() if t]


def _one(parent: ET.Element, tag: str, what: str) -> ET.Element | None:
    found = parent.findall(_R + tag)
    if len(found) > 1:
        raise _fail(f"more than one <{tag}> in {what}; Fairshare imports one licence per file")
    return found[0] if found else None


def _amount_micros(text: str | None) -> int:
    try:
        value = Decimal((text or "").strip())
    except InvalidOperation:
        raise _fail(f"<amount> {text!r} is not a decimal number") from None
    micros = value * MICROS_PER_UNIT
    if not value.is_finite() or value < 0 or micros != micros.to_integral_value():
        raise _fail(f"<amount> {text!r} must be a non-negative amount with at most 6 decimals")
    return int(micros)


def _uses(element: ET.Element) -> set[Use]:
    uses: set[Use] = set()
    for token in _tokens(element.text):
        if token not in USAGE_TOKENS:
            raise _fail(
                f"unknown usage {token!r}; RSL 1.0 defines {', '.join(sorted(USAGE_TOKENS))}"
            )
        uses.update(USAGE_TOKENS[token])
    return uses


def _read_rules(
    licence: ET.Element,
) -> tuple[set[Use] | None, set[Use], list[str] | None, list[str]]:
    permits: set[Use] | None = None
    prohibits: set[Use] = set()
    territories: list[str] | None = None
    excluded: list[str] = []
    for element in licence:
        kind = element.tag.removeprefix(_R)
        if kind not in ("permits", "prohibits"):
            continue
        rule = element.get("type", "usage")
        if rule == "usage":
            if kind == "permits":
                permits = (permits or set()) | _uses(element)
            else:
                if "ai-index" in _tokens(element.text) or "all" in _tokens(element.text):
                    raise _fail(
                        "this licence prohibits indexing (ai-index); Fairshare serves content "
                        "from its indexes, so it cannot serve this dataset"
                    )
                prohibits |= _uses(element)
        elif rule == "geo":
            codes = [t.upper() for t in _tokens(element.text)]
            if bad := [c for c in codes if not (len(c) == 2 and c.isalpha() and c.isascii())]:
                raise _fail(f"geo codes must be ISO 3166-1 alpha-2, not {', '.join(bad)}")
            if kind == "permits":
                territories = sorted(set(territories or []) | set(codes))
            else:
                excluded = sorted(set(excluded) | set(codes))
        elif rule == "user":
            users = set(_tokens(element.text))
            if unknown := users - USER_TOKENS:
                raise _fail(f"unknown user type(s) {', '.join(sorted(unknown))}")
            if (kind == "permits") != ("commercial" in users):
                raise _fail(
                    "this licence does not allow commercial users; Fairshare's customers are "
                    "businesses, so it cannot serve this dataset"
                )
        else:
            raise _fail(f'<{kind} type="{rule}"> is not an RSL 1.0 rule Fairshare understands')
    return permits, prohibits, territories, excluded


def _read_price(licence: ET.Element) -> tuple[int, str | None]:
    """(price per hit in micros, currency or None when free)."""
    payment = _one(licence, "payment", "<license>")
    if payment is None:
        return 0, None  # RSL: no <payment> means free
    kind = payment.get("type", "free")
    if kind in FREE_PAYMENTS:
        return 0, None
    if kind != PER_HIT_PAYMENT:
        raise _fail(
            f'<payment type="{kind}"> has no per-hit price; Fairshare charges per passage '
            f'delivered, which RSL expresses as type="{PER_HIT_PAYMENT}" (or free/attribution)'
        )
    amount = _one(payment, "amount", "<payment>")
    if amount is None:
        raise _fail(
            'a <payment type="use"> without an <amount> (a custom or negotiated price) cannot '
            "be charged per hit; state the <amount>"
        )
    currency = (amount.get("currency") or "").upper()
    if not currency:
        raise _fail("<amount> needs a currency attribute (ISO 4217, e.g. USD)")
    return _amount_micros(amount.text), currency


def _fs_terms(licence: ET.Element) -> dict[str, Any]:
    terms = licence.find(_F + "terms")
    if terms is None:
        return {}
    values: dict[str, Any] = {
        key.replace("-", "_"): value for key, value in terms.attrib.items() if "}" not in key
    }
    attribution = terms.find(_F + "attribution")
    if attribution is not None and attribution.text:
        values["attribution"] = attribution.text.strip()
    return values


def licence_from_rsl(
    document: bytes, *, currency: str, terms: ImportTerms | None = None
) -> Licence:
    """The Fairshare licence an RSL 1.0 document states; InvalidInput saying what does not map.

    `currency` is used for a free licence (RSL gives a free licence no currency): the owner's.
    """
    if len(document) > MAX_RSL_BYTES:
        raise _fail(f"document is larger than {MAX_RSL_BYTES // 1024} KiB")
    try:
        root = SafeET.fromstring(document)
    except (ET.ParseError, DefusedXmlException, ValueError) as exc:
        raise _fail(f"not a well-formed XML document without DTDs or entities ({exc})") from None
    if root.tag != _R + "rsl":
        raise _fail(f'the root element must be <rsl xmlns="{RSL_NAMESPACE}">, not {root.tag}')
    content = _one(root, "content", "<rsl>")
    if content is None:
        raise _fail("no <content> element")
    if content.get("server"):
        raise _fail(
            "this content requires tokens from an RSL License Server "
            f"({content.get('server')}); Fairshare cannot obtain them"
        )
    if (content.get("encrypted") or "").lower() == "true":
        raise _fail("encrypted content cannot be ingested or served")
    licence = _one(content, "license", "<content>")
    if licence is None:
        raise _fail("no <license> element in <content>")

    permits, prohibits, territories, excluded = _read_rules(licence)
    price, priced_in = _read_price(licence)
    given = {
        k: v for k, v in msgspec.structs.asdict(terms or ImportTerms()).items() if v is not None
    }
    fields = _fs_terms(licence) | given
    if "attribution" not in fields:
        copyright_ = content.find(_R + "copyright")
        if copyright_ is not None and (copyright_.text or "").strip():
            fields["attribution"] = copyright_.text.strip()  # type: ignore[union-attr]
    missing = [
        name
        for name in ("licence_id", "owner_share_bps", "snippet_cap_chars", "attribution")
        if name not in fields
    ]
    if missing:
        raise _fail(
            f"the document does not state {', '.join(missing)} (RSL has no element for them); "
            "give them on import"
        )
    raw: dict[str, Any] = {
        "id": fields["licence_id"],
        "name": fields.get("name") or fields["licence_id"],
        "currency": priced_in or currency,
        "price_per_hit_micros": price,
        "owner_share_bps": fields["owner_share_bps"],
        "snippet_cap_chars": fields["snippet_cap_chars"],
        "attribution": fields["attribution"],
        "permits": [u for u in USES if permits is None or u in permits],
        "prohibits": [u for u in USES if u in prohibits],
        "territories": territories,
        "excluded_territories": excluded,
        "valid_from": fields.get("valid_from"),
        "valid_until": fields.get("valid_until"),
        "processing_regions": None
        if fields.get("processing_regions") is None
        else str(fields["processing_regions"]).split(),
    }
    try:
        # strict=False: numbers and times in XML attributes are strings.
        return msgspec.convert(raw, Licence, strict=False).canonical()
    except msgspec.ValidationError as exc:
        raise _fail(f"the licence it states is invalid: {exc}") from None


def _usage_tokens(uses: Iterable[str], licence: Licence) -> list[str]:
    chosen = set(uses)
    if ("rag" in chosen) != ("summarize" in chosen):
        raise InvalidInput(
            f"RSL: licence {licence.id} treats rag and summarize differently, but RSL 1.0 has "
            "one token (ai-input) for both; give them the same permission to export it"
        )
    tokens = []
    if "rag" in chosen:
        tokens.append("ai-input")
    if "train" in chosen:
        tokens.append("ai-train")
    if "display" in chosen:
        tokens.append("search")
    return tokens


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def licence_to_rsl(licence: Licence, *, content_url: str = "/") -> bytes:
    """An RSL 1.0 document stating `licence` for the content at `content_url`."""
    permitted = [u for u in USES if licence.allows_use(u)]
    refused = [u for u in USES if not licence.allows_use(u)]
    ET.register_namespace("", RSL_NAMESPACE)
    ET.register_namespace("fs", FS_NAMESPACE)
    root = ET.Element(_R + "rsl")
    content = ET.SubElement(root, _R + "content", url=content_url)
    element = ET.SubElement(content, _R + "license")
    if tokens := _usage_tokens(permitted, licence):
        ET.SubElement(element, _R + "permits", type="usage").text = ",".join(tokens)
    if tokens := _usage_tokens(refused, licence):
        ET.SubElement(element, _R + "prohibits", type="usage").text = ",".join(tokens)
    ET.SubElement(element, _R + "permits", type="user").text = "commercial"
    if licence.territories is not None:
        ET.SubElement(element, _R + "permits", type="geo").text = ",".join(licence.territories)
    if licence.excluded_territories:
        ET.SubElement(element, _R + "prohibits", type="geo").text = ",".join(
            licence.excluded_territories
        )
    if licence.price_per_hit_micros:
        payment = ET.SubElement(element, _R + "payment", type=PER_HIT_PAYMENT)
        amount = Decimal(licence.price_per_hit_micros) / MICROS_PER_UNIT
        ET.SubElement(payment, _R + "amount", currency=licence.currency).text = format(amount, "f")
    else:
        ET.SubElement(element, _R + "payment", type="attribution")
    attributes = {
        "licence-id": licence.id,
        "name": licence.name,
        "owner-share-bps": str(licence.owner_share_bps),
        "snippet-cap-chars": str(licence.snippet_cap_chars),
        "valid-from": _time(licence.valid_from),
        "valid-until": _time(licence.valid_until),
        # Space-separated region codes; absent: any region.
        "processing-regions": None
        if licence.processing_regions is None
        else " ".join(licence.processing_regions),
    }
    terms = ET.SubElement(
        element, _F + "terms", {k: v for k, v in attributes.items() if v is not None}
    )
    ET.SubElement(terms, _F + "attribution").text = licence.attribution
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"
