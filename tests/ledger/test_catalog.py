from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import Chunk, ChunkText, ConflictError, InvalidInput, NotFound, Owner
from ledger.catalog import CatalogStore, Passage
from ledger.schema import chunks, documents
from tests.ledger.support import chunked, document, licence, owner, seed_dataset

# -- owners -----------------------------------------------------------------------------------


async def test_add_owner_is_idempotent(catalog: CatalogStore) -> None:
    first = await catalog.add_owner(owner())
    again = await catalog.add_owner(owner())
    assert first == again == await catalog.get_owner("acme")
    assert await catalog.list_owners() == [owner()]


async def test_same_owner_id_with_other_details_conflicts(catalog: CatalogStore) -> None:
    await catalog.add_owner(owner())
    with pytest.raises(ConflictError, match=r"owner acme .*currency"):
        await catalog.add_owner(owner(currency="EUR"))
    assert (await catalog.get_owner("acme")).currency == "USD"


async def test_owner_input_is_validated(catalog: CatalogStore) -> None:
    with pytest.raises(InvalidInput):
        await catalog.add_owner(Owner(id="Not A Slug", name="x"))
    with pytest.raises(InvalidInput, match="currency"):
        await catalog.add_owner(owner(currency="XXX"))


async def test_unknown_owner_is_not_found(catalog: CatalogStore) -> None:
    with pytest.raises(NotFound):
        await catalog.get_owner("nobody")


# -- datasets and licences --------------------------------------------------------------------


async def test_add_dataset_embeds_licence_and_is_idempotent(catalog: CatalogStore) -> None:
    await catalog.add_owner(owner())
    kwargs = dict(dataset_id="guides", owner_id="acme", name="Guides", description="d")
    ds = await catalog.add_dataset(**kwargs, licence=licence())
    assert ds.licence == licence().canonical() and ds.owner_id == "acme"
    assert (ds.document_count, ds.chunk_count) == (0, 0)
    assert await catalog.add_dataset(**kwargs, licence=licence()) == ds
    assert await catalog.list_datasets() == [ds]
    assert await catalog.generations() == {"guides": 0}


async def test_dataset_for_missing_owner_is_not_found(catalog: CatalogStore) -> None:
    with pytest.raises(NotFound, match="owner ghost"):
        await catalog.add_dataset(
            dataset_id="d", owner_id="ghost", name="D", description="", licence=licence()
        )
    assert await catalog.list_datasets() == []


async def test_licence_currency_must_match_owner(catalog: CatalogStore) -> None:
    await catalog.add_owner(owner(currency="EUR"))
    with pytest.raises(InvalidInput, match=r"USD.*EUR"):
        await catalog.add_dataset(
            dataset_id="d", owner_id="acme", name="D", description="", licence=licence()
        )
    assert await catalog.list_datasets() == []


async def test_licence_terms_are_immutable(catalog: CatalogStore) -> None:
    await seed_dataset(catalog, "guides")
    with pytest.raises(ConflictError, match="licence std-v1 already exists with different terms"):
        await catalog.add_dataset(
            dataset_id="other",
            owner_id="acme",
            name="Other",
            description="",
            licence=licence(price=9_999),
        )
    # Nothing of the refused call was written: no dataset, terms unchanged.
    assert [d.id for d in await catalog.list_datasets()] == ["guides"]
    assert (await catalog.get_dataset("guides")).licence.price_per_hit_micros == 2_000


async def test_dataset_update_switches_to_new_licence(catalog: CatalogStore) -> None:
    await seed_dataset(catalog, "guides")
    new_terms = licence("std-v2", price=3_000)
    ds = await catalog.add_dataset(
        dataset_id="guides", owner_id="acme", name="Renamed", description="new", licence=new_terms
    )
    assert (ds.name, ds.description, ds.licence) == ("Renamed", "new", new_terms.canonical())
    assert await catalog.serving_state() == {"guides": (0, "std-v2")}


async def test_dataset_of_another_owner_conflicts(catalog: CatalogStore) -> None:
    await seed_dataset(catalog, "guides")
    await catalog.add_owner(owner("rival"))
    with pytest.raises(ConflictError, match="another owner"):
        await catalog.add_dataset(
            dataset_id="guides", owner_id="rival", name="Mine", description="", licence=licence()
        )
    assert (await catalog.get_dataset("guides")).owner_id == "acme"


async def test_unknown_dataset_is_not_found(catalog: CatalogStore) -> None:
    with pytest.raises(NotFound):
        await catalog.get_dataset("nope")


# -- ingest -----------------------------------------------------------------------------------


async def test_commit_ingest_stores_documents_and_chunks(catalog: CatalogStore) -> None:
    await seed_dataset(catalog)
    a = chunked("guides", document("a", "alpha text that is long enough"))
    b = chunked("guides", document("b", "bravo"))
    gen = await catalog.commit_ingest(
        dataset_id="guides", expected_generation=0, upserts=[a, b], deletes=[]
    )
    assert gen == 1 and await catalog.generations() == {"guides": 1}
    assert await catalog.serving_state() == {"guides": (1, "std-v1")}
    ds = await catalog.get_dataset("guides")
    assert (ds.document_count, ds.chunk_count) == (2, len(a[2]) + 1)
    assert await catalog.document_hashes("guides") == {"a": a[1], "b": b[1]}
    texts = await catalog.chunk_texts("guides")
    assert texts[0] == ChunkText(
        chunk_id="guides:a:0",
        document_id="a",
        title="Title of a",
        text="alpha text",
        language="en",
    )
    assert [t.chunk_id for t in texts] == [c.id for c in a[2]] + ["guides:b:0"]
    assert [t.document_id for t in texts] == ["a"] * len(a[2]) + ["b"]
    assert "".join(t.text for t in texts[:-1]) == "alpha text that is long enough"


async def test_reingest_replaces_all_chunks_and_deletes(
    catalog: CatalogStore, engine: AsyncEngine
) -> None:
    await seed_dataset(catalog)
    long_doc = chunked("guides", document("a", "x" * 45))
    await catalog.commit_ingest(
        dataset_id="guides",
        expected_generation=0,
        upserts=[long_doc, chunked("guides", document("b", "bravo"))],
        deletes=[],
    )
    shorter = chunked("guides", document("a", "new and short", title="New"), size=100)
    gen = await catalog.commit_ingest(
        dataset_id="guides", expected_generation=1, upserts=[shorter], deletes=["b", "never-was"]
    )
    assert gen == 2
    assert [
        (t.chunk_id, t.document_id, t.title, t.text) for t in await catalog.chunk_texts("guides")
    ] == [("guides:a:0", "a", "New", "new and short")]
    assert await catalog.document_hashes("guides") == {"a": shorter[1]}
    # The old chunks 1..4 of "a" and all of "b" are gone, not orphaned.
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(chunks))).scalar() == 1


async def test_deleting_a_document_cascades_to_chunks(
    catalog: CatalogStore, engine: AsyncEngine
) -> None:
    await seed_dataset(catalog)
    await catalog.commit_ingest(
        dataset_id="guides",
        expected_generation=0,
        upserts=[chunked("guides", document("a", "y" * 30))],
        deletes=[],
    )
    async with engine.begin() as conn:
        await conn.execute(delete(documents))
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(chunks))).scalar() == 0


async def test_stale_generation_conflicts_and_writes_nothing(catalog: CatalogStore) -> None:
    await seed_dataset(catalog)
    await catalog.commit_ingest(
        dataset_id="guides",
        expected_generation=0,
        upserts=[chunked("guides", document("a", "first"))],
        deletes=[],
    )
    with pytest.raises(ConflictError, match="changed by another ingest; retry"):
        await catalog.commit_ingest(
            dataset_id="guides",
            expected_generation=0,
            upserts=[chunked("guides", document("z", "late"))],
            deletes=["a"],
        )
    assert set(await catalog.document_hashes("guides")) == {"a"}
    assert await catalog.generations() == {"guides": 1}


async def test_ingest_into_unknown_dataset_is_not_found(catalog: CatalogStore) -> None:
    with pytest.raises(NotFound):
        await catalog.commit_ingest(
            dataset_id="nope", expected_generation=0, upserts=[], deletes=[]
        )


async def test_chunk_span_must_match_document_text(catalog: CatalogStore) -> None:
    await seed_dataset(catalog)
    doc = document("a", "hello world")
    bad = Chunk(
        id="c",
        dataset_id="guides",
        document_id="a",
        ordinal=0,
        text="world",
        char_start=0,
        char_end=5,
    )
    with pytest.raises(InvalidInput, match="span"):
        await catalog.commit_ingest(
            dataset_id="guides", expected_generation=0, upserts=[(doc, "h", [bad])], deletes=[]
        )
    assert await catalog.generations() == {"guides": 0}


async def test_chunk_id_taken_by_another_dataset_conflicts(catalog: CatalogStore) -> None:
    await seed_dataset(catalog, "one")
    await seed_dataset(catalog, "two")
    await catalog.commit_ingest(
        dataset_id="one",
        expected_generation=0,
        upserts=[chunked("one", document("a", "same"), prefix="p")],
        deletes=[],
    )
    doc = document("a", "same")
    clash = Chunk(
        id="pone:a:0",
        dataset_id="two",
        document_id="a",
        ordinal=0,
        text="same",
        char_start=0,
        char_end=4,
    )
    with pytest.raises(ConflictError):
        await catalog.commit_ingest(
            dataset_id="two", expected_generation=0, upserts=[(doc, "h", [clash])], deletes=[]
        )
    assert await catalog.generations() == {"one": 1, "two": 0}  # rolled back whole


async def test_large_ingest_round_trips(catalog: CatalogStore) -> None:
    await seed_dataset(catalog)
    docs = [chunked("guides", document(f"d{i:05d}", f"text {i:04d} " * 4)) for i in range(5_000)]
    assert sum(len(c) for _, _, c in docs) == 20_000
    await catalog.commit_ingest(
        dataset_id="guides", expected_generation=0, upserts=docs, deletes=[]
    )
    ds = await catalog.get_dataset("guides")
    assert (ds.document_count, ds.chunk_count) == (5_000, 20_000)
    gen = await catalog.commit_ingest(
        dataset_id="guides",
        expected_generation=1,
        upserts=docs[:2_500],
        deletes=[d.id for d, _, _ in docs[2_500:]],
    )
    ds = await catalog.get_dataset("guides")
    assert (gen, ds.document_count, ds.chunk_count) == (2, 2_500, 10_000)


# -- passages ---------------------------------------------------------------------------------


async def test_get_passages_returns_citation_fields(catalog: CatalogStore) -> None:
    await seed_dataset(catalog)
    doc = document("a", "0123456789abcdefghij")
    await catalog.commit_ingest(
        dataset_id="guides", expected_generation=0, upserts=[chunked("guides", doc)], deletes=[]
    )
    found = await catalog.get_passages(["guides:a:1", "missing", "guides:a:1"])
    assert found == {
        "guides:a:1": Passage(
            chunk_id="guides:a:1",
            dataset_id="guides",
            document_id="a",
            title="Title of a",
            url="https://example.org/a",
            text="abcdefghij",
            char_start=10,
            char_end=20,
        )
    }
    p = found["guides:a:1"]
    assert doc.text[p.char_start : p.char_end] == p.text
    assert await catalog.get_passages([]) == {}
    assert (
        await catalog.get_chunk("guides:a:0")
        == (await catalog.get_passages(["guides:a:0"]))["guides:a:0"]
    )
    with pytest.raises(NotFound):
        await catalog.get_chunk("missing")


async def test_get_passages_for_a_hundred_ids(catalog: CatalogStore) -> None:
    await seed_dataset(catalog)
    docs = [chunked("guides", document(f"d{i}", "z" * 20)) for i in range(60)]
    await catalog.commit_ingest(
        dataset_id="guides", expected_generation=0, upserts=docs, deletes=[]
    )
    ids = [c.id for _, _, cs in docs for c in cs][:100]
    found = await catalog.get_passages(ids)
    assert sorted(found) == sorted(ids)
    assert all(p.chunk_id == cid for cid, p in found.items())
