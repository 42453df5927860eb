"""Languages at ingest, end to end through the real ingest and search: languages outside the
eight XQuAD-R ones (nothing was tuned to those), text with no detectable language, and text with
nothing in it.

The sentences are our own, written for these tests (not taken from any corpus): a capital, a
river or mountain, and something people eat or grow, in each language.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import pytest_asyncio

from contracts import Owner
from ranking.embedder import Embedder
from ranking.pipeline import Mode
from service.runtime import Runtime, open_runtime
from tests.conftest import PLAIN_LICENCE as LICENCE
from tests.conftest import make_settings

# language -> documents (id -> text); one dataset per language, as one regional publisher's.
HELD_OUT: dict[str, dict[str, str]] = {
    "th": {
        # Bangkok is the capital of Thailand, with more than eight million people.
        "capital": "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทยและมีประชากรมากกว่าแปดล้านคน",
        # The Chao Phraya flows through central Bangkok and is an important route for goods.
        "landmark": "แม่น้ำเจ้าพระยาไหลผ่านใจกลางกรุงเทพและเป็นเส้นทางขนส่งสินค้าที่สำคัญ",
        # Durian is a strong-smelling fruit, popular in the south of Thailand.
        "food": "ทุเรียนเป็นผลไม้ที่มีกลิ่นแรงและได้รับความนิยมในภาคใต้ของประเทศไทย",
    },
    "zh": {
        "capital": "北京是中华人民共和国的首都，也是全国的政治和文化中心。",
        "landmark": "长江是亚洲最长的河流，流经上海后注入东海。",
        "food": "熊猫主要生活在四川的山区，以竹子为食。",
    },
    "vi": {
        "capital": "Hà Nội là thủ đô của Việt Nam và có lịch sử hơn một nghìn năm.",
        "landmark": "Sông Mê Kông chảy qua sáu quốc gia trước khi đổ ra Biển Đông.",
        "food": "Phở là món ăn truyền thống được nấu từ nước dùng xương bò và bánh phở.",
    },
    "id": {
        "capital": "Jakarta adalah ibu kota Indonesia dan merupakan kota terbesar di negara itu.",
        "landmark": "Gunung Merapi di Jawa Tengah adalah salah satu gunung berapi paling aktif di dunia.",
        "food": "Rendang adalah masakan daging sapi yang dimasak lama dengan santan dan rempah-rempah.",
    },
    "sw": {
        "capital": "Nairobi ni mji mkuu wa Kenya na ni kituo kikubwa cha biashara katika Afrika Mashariki.",
        "landmark": "Mlima Kilimanjaro ndio mlima mrefu zaidi barani Afrika na uko nchini Tanzania.",
        "food": "Wakulima wengi hulima mahindi na maharagwe wakati wa msimu wa mvua.",
    },
    "yo": {
        # Lagos is the largest city in Nigeria, and it lies by the sea.
        "capital": "Èkó ni ìlú tí ó tóbi jùlọ ní orílẹ̀-èdè Nàìjíríà, ó sì wà ní etí òkun.",
        # Osun is an important river that flows past the town of Osogbo.
        "landmark": "Ọ̀ṣun jẹ́ odò pàtàkì kan tí ó ń ṣàn kọjá ìlú Òṣogbo.",
        # Farmers plant yam and maize in the rainy season.
        "food": "Àwọn àgbẹ̀ máa ń gbin iṣu àti àgbàdo nígbà òjò.",
    },
}
# (language, query, the document it asks for): words a reader would type, not copied spans.
QUERIES = [
    ("th", "ผลไม้กลิ่นแรง", "food"),  # strong-smelling fruit
    ("th", "แม่น้ำสายไหนไหลผ่านกรุงเทพ", "landmark"),  # which river flows through Bangkok
    ("zh", "熊猫吃什么", "food"),  # what do pandas eat
    ("zh", "亚洲最长的河", "landmark"),  # Asia's longest river
    ("vi", "món ăn truyền thống", "food"),  # traditional dish
    ("vi", "thủ đô Việt Nam", "capital"),  # capital of Vietnam
    ("id", "gunung berapi yang aktif", "landmark"),  # an active volcano
    ("id", "ibu kota negara", "capital"),  # the nation's capital
    ("sw", "mlima mrefu Afrika", "landmark"),  # tall mountain Africa
    ("sw", "wakulima na mahindi", "food"),  # farmers and maize
    ("yo", "iṣu àti àgbàdo", "food"),  # yam and maize
    ("yo", "odò Ọ̀ṣun", "landmark"),  # the Osun river
]


async def no_texts(ids: Sequence[str]) -> dict[str, str]:
    return {}


def write_jsonl(path: Path, records: Sequence[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


@pytest_asyncio.fixture(scope="module")
async def runtime(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> AsyncIterator[Runtime]:
    root = tmp_path_factory.mktemp("held-out")
    async with open_runtime(make_settings(root / "data"), with_reranker=False) as rt:
        await rt.catalog.add_owner(Owner(id="o", name="O"))
        for language, documents in HELD_OUT.items():
            await rt.catalog.add_dataset(
                dataset_id=language, owner_id="o", name=language, description="", licence=LICENCE
            )
            records = [{"id": i, "text": text} for i, text in documents.items()]
            source = write_jsonl(root / f"{language}.jsonl", records)
            report = await rt.ingest(source, language, progress=False)
            assert not report.errors and report.added == len(documents)
        yield rt


async def search(rt: Runtime, dataset: str, query: str, mode: Mode) -> list[str]:
    generations = {dataset: (await rt.catalog.generations())[dataset]}
    ranking = await rt.pipeline.search(
        query, generations=generations, rerank=False, texts=no_texts, mode=mode
    )
    passages = await rt.catalog.get_passages([r.chunk_id for r in ranking.items])
    return [passages[r.chunk_id].document_id for r in ranking.items]


@pytest.mark.parametrize("language", sorted(HELD_OUT))
async def test_held_out_languages_are_detected(runtime: Runtime, language: str) -> None:
    assert {c.language for c in await runtime.catalog.chunk_texts(language)} == {language}


@pytest.mark.parametrize(("language", "query", "expected"), QUERIES)
@pytest.mark.parametrize("mode", ["bm25", "hybrid"])
async def test_held_out_languages_are_searchable(
    runtime: Runtime, language: str, query: str, expected: str, mode: Mode
) -> None:
    assert (await search(runtime, language, query, mode))[0] == expected


async def test_blank_records_are_errors_with_their_line_and_undetectable_text_is_und(
    runtime: Runtime, tmp_path: Path
) -> None:
    await runtime.catalog.add_dataset(
        dataset_id="odd", owner_id="o", name="odd", description="", licence=LICENCE
    )
    source = write_jsonl(
        tmp_path / "odd.jsonl",
        [
            {"id": "part", "text": "4711-B · 12345 · 67890 · 2026-03"},
            {"id": "spaces", "text": " \n\t "},
            {"id": "invisible", "text": "\ufeff\u200b"},  # a byte-order mark, a zero-width space
            {"id": "stated", "text": "Ceci est un texte.", "language": "fr-CA"},
            {"id": "empty", "text": ""},
        ],
    )
    report = await runtime.ingest(source, "odd", progress=False)
    assert [str(e) for e in report.errors] == [
        "odd.jsonl:2: text is empty or whitespace only",
        "odd.jsonl:3: text is empty or whitespace only",
        "odd.jsonl:5: text is empty or whitespace only",
    ]
    languages = {c.document_id: c.language for c in await runtime.catalog.chunk_texts("odd")}
    assert languages == {"part": "und", "stated": "fr"}
    assert (await search(runtime, "odd", "12345 4711-B", "hybrid"))[0] == "part"
