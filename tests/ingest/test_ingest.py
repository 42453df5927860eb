"""Ingest into the real catalog and indexes: idempotent, replacing, syncing, never half-visible."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from contracts import Licence, Owner
from ingest.run import IngestReport, ingest_source
from ranking.embedder import SentenceEmbedder
from service.runtime import Runtime, open_runtime
from tests.conftest import make_settings

LICENCE = Licence(
    id="test-licence",
    name="Test licence",
    currency="USD",
    price_per_hit_micros=1000,
    owner_share_bps=5000,
    snippet_cap_chars=500,
    attribution="Test attribution",
)
DOCS = [
    {
        "id": "pneumonia",
        "title": "Pneumonia",
        "text": "Amoxicillin is first-line for community-acquired pneumonia in adults.",
    },
    {
        "id": "sepsis",
        "title": "Sepsis",
        "text": "Give 30 ml/kg crystalloid within three hours of recognising septic shock.",
    },
    {
        "id": "stroke",
        "title": "Stroke",
        "text": "Thrombolysis is offered within 4.5 hours of ischaemic stroke onset.",
    },
]


@pytest_asyncio.fixture
async def runtime(tmp_path: Path, embedder: SentenceEmbedder) -> AsyncIterator[Runtime]:
    async with open_runtime(
        make_settings(tmp_path / "data"), with_qdrant=True, with_reranker=False
    ) as rt:
        await rt.catalog.add_owner(Owner(id="owner", name="Owner"))
        await rt.catalog.add_dataset(
            dataset_id="ds", owner_id="owner", name="DS", description="", licence=LICENCE
        )
        yield rt


def write_jsonl(path: Path, docs: Sequence[dict[str, Any] | str]) -> Path:
    path.write_text("\n".join(d if isinstance(d, str) else json.dumps(d) for d in docs) + "\n")
    return path


async def ingest(rt: Runtime, path: Path, **options: Any) -> IngestReport:
    options.setdefault("dataset_id", "ds")
    options.setdefault("catalog", rt.catalog)
    return await ingest_source(
        path,
        embedder=rt.embedder,
        vector_indexes=rt.vector_indexes(),
        lexical=rt.lexical,
        lock_dir=rt.lock_dir,
        progress=False,
        **options,
    )


async def visible_chunks(rt: Runtime) -> dict[str, set[str]]:
    """Chunk ids each store holds for the dataset at the catalog's current generation."""
    generation = (await rt.catalog.generations())["ds"]
    assert rt.qdrant is not None
    return {
        "sql": {c.chunk_id for c in await rt.catalog.chunk_texts("ds")},
        "faiss": rt.faiss.chunk_ids("ds", generation),
        "qdrant": rt.qdrant.chunk_ids("ds", generation),
        "bm25": rt.lexical.chunk_ids("ds", generation),
    }


async def top_document(rt: Runtime, query: str) -> str | None:
    generations = await rt.catalog.generations()

    async def texts(ids: Sequence[str]) -> dict[str, str]:
        return {}

    ranking = await rt.pipeline.search(query, generations=generations, rerank=False, texts=texts)
    passages = await rt.catalog.get_passages([r.chunk_id for r in ranking.items])
    visible = [passages[r.chunk_id].document_id for r in ranking.items if r.chunk_id in passages]
    return visible[0] if visible else None


async def test_ingest_writes_every_store_and_search_finds_it(
    runtime: Runtime, tmp_path: Path
) -> None:
    report = await ingest(runtime, write_jsonl(tmp_path / "d.jsonl", DOCS))
    assert (report.added, report.changed, report.unchanged, report.errors) == (3, 0, 0, [])
    stores = await visible_chunks(runtime)
    assert len(stores["sql"]) == 3
    assert stores["faiss"] == stores["qdrant"] == stores["bm25"] == stores["sql"]
    assert await top_document(runtime, "septic shock fluids") == "sepsis"


async def test_reingesting_the_same_file_changes_nothing(runtime: Runtime, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", DOCS)
    first = await ingest(runtime, path)
    files_before = sorted(
        p.relative_to(runtime.settings.partition_dir)
        for p in (runtime.settings.partition_dir / "faiss").rglob("*")
    )
    stores_before = await visible_chunks(runtime)
    again = await ingest(runtime, path)
    assert (again.added, again.changed, again.unchanged, again.chunks_written) == (0, 0, 3, 0)
    assert again.generation == first.generation
    assert await visible_chunks(runtime) == stores_before
    assert (
        sorted(
            p.relative_to(runtime.settings.partition_dir)
            for p in (runtime.settings.partition_dir / "faiss").rglob("*")
        )
        == files_before
    )


async def test_a_changed_document_replaces_its_chunks_everywhere(
    runtime: Runtime, tmp_path: Path
) -> None:
    await ingest(runtime, write_jsonl(tmp_path / "d.jsonl", DOCS))
    before = await visible_chunks(runtime)
    changed = [
        *DOCS[:2],
        {
            **DOCS[2],
            "text": "Mechanical thrombectomy is considered up to 24 hours for large-vessel occlusion.",
        },
    ]
    report = await ingest(runtime, write_jsonl(tmp_path / "d2.jsonl", changed))
    assert (report.added, report.changed, report.unchanged) == (0, 1, 2)
    after = await visible_chunks(runtime)
    assert len(after["sql"]) == 3
    assert after["faiss"] == after["qdrant"] == after["bm25"] == after["sql"]
    assert len(after["sql"] - before["sql"]) == 1 and len(before["sql"] - after["sql"]) == 1
    passages = await runtime.catalog.get_passages(sorted(after["sql"]))
    assert "thrombectomy" in {p.document_id: p.text for p in passages.values()}["stroke"]
    assert await top_document(runtime, "thrombectomy for large vessel occlusion") == "stroke"


async def test_sync_removes_documents_gone_from_the_source(
    runtime: Runtime, tmp_path: Path
) -> None:
    await ingest(runtime, write_jsonl(tmp_path / "d.jsonl", DOCS))
    without_sepsis = write_jsonl(tmp_path / "d2.jsonl", [DOCS[0], DOCS[2]])
    plain = await ingest(runtime, without_sepsis)
    assert plain.removed == 0 and len((await visible_chunks(runtime))["sql"]) == 3
    synced = await ingest(runtime, without_sepsis, sync=True)
    assert synced.removed == 1
    stores = await visible_chunks(runtime)
    assert len(stores["sql"]) == 2
    assert stores["faiss"] == stores["qdrant"] == stores["bm25"] == stores["sql"]
    assert await top_document(runtime, "septic shock crystalloid") != "sepsis"


async def test_bad_records_are_reported_and_good_ones_still_go_in(
    runtime: Runtime, tmp_path: Path
) -> None:
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [DOCS[0], "{broken", {"id": "x", "title": "no text"}, DOCS[1], DOCS[0]],
    )
    report = await ingest(runtime, path, sync=True)
    assert report.added == 2
    assert [e.location for e in report.errors] == ["d.jsonl:2", "d.jsonl:3", "d.jsonl:5"]
    assert "duplicate" in report.errors[2].reason
    assert any("sync" in note for note in report.notes)


async def test_strict_mode_writes_nothing_when_any_record_is_bad(
    runtime: Runtime, tmp_path: Path
) -> None:
    report = await ingest(
        runtime, write_jsonl(tmp_path / "d.jsonl", [DOCS[0], "{broken"]), strict=True
    )
    assert report.added == 0 and len(report.errors) == 1
    assert (await runtime.catalog.generations())["ds"] == 0
    assert await runtime.catalog.chunk_texts("ds") == []


async def test_a_failed_ingest_leaves_the_previous_version_serving(
    runtime: Runtime, tmp_path: Path
) -> None:
    await ingest(runtime, write_jsonl(tmp_path / "d.jsonl", DOCS))
    before = await visible_chunks(runtime)

    class CommitFails:
        """The real catalog, except that the commit of the next ingest fails (e.g. disk full)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(runtime.catalog, name)

        async def commit_ingest(self, **kwargs: Any) -> int:
            raise OSError("disk full")

    changed = [{**d, "text": d["text"] + " Revised."} for d in DOCS]
    with pytest.raises(OSError):
        await ingest(runtime, write_jsonl(tmp_path / "d2.jsonl", changed), catalog=CommitFails())
    assert await visible_chunks(runtime) == before
    passages = await runtime.catalog.get_passages(sorted(before["sql"]))
    assert not any("Revised" in p.text for p in passages.values())
    assert await top_document(runtime, "septic shock fluids") == "sepsis"
    # And the next good ingest goes through cleanly.
    report = await ingest(runtime, write_jsonl(tmp_path / "d3.jsonl", changed))
    assert report.changed == 3


async def test_unknown_dataset_and_missing_source_are_clear_errors(
    runtime: Runtime, tmp_path: Path
) -> None:
    from contracts import InvalidInput

    with pytest.raises(InvalidInput, match="does not exist"):
        await ingest(runtime, tmp_path / "missing.jsonl")
    with pytest.raises(InvalidInput, match="unknown dataset"):
        await ingest(runtime, write_jsonl(tmp_path / "d.jsonl", DOCS), dataset_id="nope")


DEMO = Path(__file__).resolve().parents[2] / "demo" / "clinical" / "documents.jsonl"


def mixed_documents() -> list[dict[str, Any]]:
    """Some long (several chunks each) with no stated language, some short with one."""
    demo = [json.loads(line) for line in DEMO.read_text().splitlines()[:12]]
    long = [
        {"id": f"long-{i}", "title": f"Combined {i}", "text": " ".join(d["text"] for d in group)}
        for i, group in enumerate([demo[0:3], demo[3:6], demo[6:9]])
    ]
    return long + demo[9:12]


async def test_pipelined_ingest_writes_what_a_plain_loop_would(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Language detection overlaps chunking and embedding; the stored chunks, their ids and
    vectors must be exactly those of doing each step in turn over the documents in order."""
    import msgspec
    import numpy as np

    from contracts import Document
    from ingest import run as ingest_run
    from ingest.chunking import chunk_document, indexed_text
    from ranking.language import detect_language, settle_languages

    # Small calls, so that embedding and language detection really interleave.
    monkeypatch.setattr(ingest_run, "EMBED_STEP", 3)
    docs = mixed_documents()
    report = await ingest(runtime, write_jsonl(tmp_path / "d.jsonl", docs))

    documents = [Document(**d) for d in docs]
    unstated = [d for d in documents if not d.language]
    settled = dict(
        zip(
            [d.id for d in unstated],
            settle_languages([detect_language(d.text) for d in unstated]),
            strict=True,
        )
    )
    expected = [
        chunk
        for d in documents
        for chunk in chunk_document(
            "ds",
            msgspec.structs.replace(d, language=d.language or settled[d.id]),
            runtime.embedder.token_spans,
        )
    ]
    assert report.chunks_written == len(expected) > 2 * 3  # several embedder calls
    stored = await runtime.catalog.get_passages([c.id for c in expected])
    assert [
        (stored[c.id].text, stored[c.id].char_start, stored[c.id].char_end) for c in expected
    ] == [(c.text, c.char_start, c.char_end) for c in expected]

    title = {d.id: d.title for d in documents}
    texts = [indexed_text(title[c.document_id], c.text) for c in expected]
    reference = np.vstack(
        [runtime.embedder.embed_passages(texts[i : i + 3]) for i in range(0, len(texts), 3)]
    )
    faiss_dir = runtime.settings.partition_dir / "faiss" / "ds" / str(report.generation)
    assert json.loads((faiss_dir / "ids.json").read_text()) == [c.id for c in expected]
    np.testing.assert_allclose(np.load(faiss_dir / "vectors.npy"), reference, atol=1e-6)


async def test_an_embedding_failure_midway_writes_nothing(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest import run as ingest_run

    monkeypatch.setattr(ingest_run, "EMBED_STEP", 2)
    real = runtime.embedder

    class FailsOnSecondCall:
        """The real embedder, except that its second passage call fails (e.g. out of memory)."""

        def __init__(self) -> None:
            self.calls = 0

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def embed_passages(self, texts: Sequence[str]) -> Any:
            self.calls += 1
            if self.calls == 2:
                raise MemoryError("out of memory")
            return real.embed_passages(texts)

    with pytest.raises(MemoryError):
        await ingest_source(
            write_jsonl(tmp_path / "d.jsonl", mixed_documents()),
            dataset_id="ds",
            catalog=runtime.catalog,
            embedder=FailsOnSecondCall(),
            vector_indexes=runtime.vector_indexes(),
            lexical=runtime.lexical,
            lock_dir=runtime.lock_dir,
            progress=False,
        )
    assert (await runtime.catalog.generations())["ds"] == 0
    assert await visible_chunks(runtime) == {
        "sql": set(),
        "faiss": set(),
        "qdrant": set(),
        "bm25": set(),
    }
    assert runtime.qdrant is not None and runtime.qdrant.chunk_ids("ds", 1) == set()
    # The lock is free and the next ingest goes through.
    report = await ingest(runtime, write_jsonl(tmp_path / "d.jsonl", DOCS))
    assert report.added == 3
