"""Language codes: ISO 639-1, plus "und" for text whose language could not be told."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from msgspec import Meta

# ISO 639-2's code for "undetermined": what a document or query gets when detection fails.
UNDETERMINED = "und"
# Every ISO 639-1 code (the Library of Congress registry, 183 codes; deprecated ones left out).
_ISO_639_1_TABLE = """
    aa ab ae af ak am an ar as av ay az ba be bg bi bm bn bo br bs ca ce ch co cr cs cu cv cy
    da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht
    hu hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky
    la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny
    oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss
    st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo
    za zh zu
"""
ISO_639_1 = frozenset(_ISO_639_1_TABLE.split())
LANGUAGE_CODES = ISO_639_1 | {UNDETERMINED}
# The shape of a code; whether it exists is `unknown_languages`'s check.
LanguageCode = Annotated[
    str,
    Meta(
        pattern=r"^(?:[a-z]{2}|und)$",
        description='ISO 639-1 code (e.g. "de"), or "und": text whose language was not detected',
    ),
]

# A search filter: at least one code, each at most once worth sending.
Languages = Annotated[list[LanguageCode], Meta(min_length=1, max_length=len(LANGUAGE_CODES))]


def unknown_languages(codes: Iterable[str]) -> list[str]:
    """The codes among `codes` that are neither ISO 639-1 nor "und", sorted, once each."""
    return sorted(set(codes) - LANGUAGE_CODES)
