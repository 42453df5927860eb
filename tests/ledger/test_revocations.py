"""Revocation in the SQL store, on SQLite and PostgreSQL: the catalog forgets the content, the
ledger keeps every charge, and stored responses lose the revoked text and nothing else."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from sqlalchemy import Table, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import (
    Citation,
    ConflictError,
    NotFound,
    ReceiptClaims,
    RegionRemoval,
    RevocationClaims,
    SearchResponse,
    SearchResult,
    Timings,
)
from ledger.catalog import CatalogStore
from ledger.hits import HitLedger
from ledger.receipts import ReceiptInvalid, ReceiptSigner, revocation_receipt
from ledger.revocations import RevocationStore
from ledger.schema import chunks, documents, hits, utcnow
from ledger.verify import verify
from tests.ledger.support import T0, chunked, document, hit, licence, record, seed_dataset

SECRET = "Amoxicillin is first-line for community-acquired pneumonia"


def _response(query_id: str, *datasets: str) -> bytes:
    """A search response as `run_search` stores it: one result per dataset named."""
    results = [
        SearchResult(
            chunk_id=f"{dataset}:doc:{rank}",
            text=f"{SECRET} ({dataset})",
            score=0.5,
            price_micros=2_000,
            citation=Citation(
                dataset_id=dataset,
                owner_id="acme",
                owner_name="Acme Press",
                document_id="doc",
                title=f"Pneumonia guide ({dataset})",
                url=f"https://example.org/{dataset}",
                char_start=0,
                char_end=len(SECRET),
                licence_id="std-v1",
                attribution="© Acme Press, used under licence",
            ),
        )
        for rank, dataset in enumerate(datasets, start=1)
    ]
    return msgspec.json.encode(
        SearchResponse(
            query_id=query_id,
            results=results,
            cost_micros=2_000 * len(results),
            currency="USD",
            reranked=False,
            timings_ms=Timings(embed=1.0, retrieve=1.0, rerank=0.0, total=2.0),
            receipt="header.payload.signature",
        )
    )


async def _history(catalog: CatalogStore, ledger: HitLedger) -> None:
    """Two datasets of one owner with content, and a query that bought from both."""
    await seed_dataset(catalog, "guides")
    await catalog.add_dataset(
        dataset_id="cases", owner_id="acme", name="Cases", description="", licence=licence()
    )
    for dataset_id in ("guides", "cases"):
        await catalog.commit_ingest(
            dataset_id=dataset_id,
            expected_generation=0,
            upserts=[chunked(dataset_id, document("doc", SECRET), size=20)],
            deletes=[],
        )
    both = [hit("q1", 1, dataset_id="guides"), hit("q1", 2, dataset_id="cases")]
    await record(
        ledger, "q1", both, idempotency_key="k1", response=_response("q1", *["guides", "cases"])
    )
    await record(
        ledger, "q2", [hit("q2", 1, dataset_id="cases")], response=_response("q2", "cases")
    )


async def _rows(engine: AsyncEngine, table: Table, dataset_id: str) -> int:
    query = select(func.count()).select_from(table).where(table.c.dataset_id == dataset_id)
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def test_revoking_removes_the_content_and_keeps_every_charge(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger
) -> None:
    await _history(catalog, ledger)
    store = RevocationStore(engine)
    chunk_ids = {c.chunk_id for c in await catalog.chunk_texts("guides")}
    hits_before = await _rows(engine, hits, "guides")

    revoked_at = await store.mark_revoked("guides", utcnow())
    assert "guides" not in await catalog.serving_state()  # no server serves it from now on
    assert "cases" in await catalog.serving_state()
    assert (await catalog.get_dataset("guides")).revoked_at == revoked_at
    assert await store.mark_revoked("guides", utcnow()) == revoked_at  # set once

    removed = await store.delete_content("guides")
    assert (removed.documents, removed.chunks, set(removed.chunk_ids)) == (1, 3, chunk_ids)
    assert await _rows(engine, documents, "guides") == await _rows(engine, chunks, "guides") == 0
    assert await _rows(engine, chunks, "cases") == 3  # the other dataset is untouched
    assert await catalog.get_passages(list(chunk_ids)) == {}

    assert await store.scrub_responses("guides", "acme") == 1
    assert await store.scrub_responses("guides", "acme") == 0  # nothing left to scrub
    replayed = await ledger.replay(
        customer_id="cus_1", idempotency_key="k1", request_hash="req-hash"
    )
    assert replayed is not None
    response = msgspec.json.decode(replayed, type=SearchResponse)
    guides, cases = response.results
    assert (guides.text, guides.citation.title, guides.citation.url) == ("", "", None)
    assert (guides.chunk_id, guides.price_micros, response.cost_micros) == (
        "guides:doc:1",
        2_000,
        4_000,
    )
    assert response.receipt == "header.payload.signature"
    assert cases.text == f"{SECRET} (cases)" and cases.citation.url == "https://example.org/cases"
    assert b"(guides)" not in replayed

    assert await _rows(engine, hits, "guides") == hits_before
    report = await verify(engine)
    assert report.ok, report.problems
    dataset = await catalog.get_dataset("guides")
    assert (dataset.document_count, dataset.chunk_count) == (0, 0)


async def test_a_revoked_dataset_cannot_be_ingested_or_charged_again(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger
) -> None:
    await _history(catalog, ledger)
    await RevocationStore(engine).mark_revoked("guides", utcnow())
    with pytest.raises(ConflictError, match=r"was revoked at .* may not be ingested again"):
        await catalog.commit_ingest(
            dataset_id="guides",
            expected_generation=1,
            upserts=[chunked("guides", document("new", "Fresh text"))],
            deletes=[],
        )
    assert await _rows(engine, documents, "guides") == 1  # the commit wrote nothing
    # A search that read its passages before the revocation cannot record them after it: its
    # response would carry the text the scrub has already removed from the others.
    with pytest.raises(ConflictError, match="revoked while it ran; nothing was charged"):
        await record(ledger, "q3", [hit("q3", 1, dataset_id="guides")])
    assert await ledger.hits_for_query("q3") == []
    await record(ledger, "q4", [hit("q4", 1, dataset_id="cases")])  # other datasets: as before
    assert (await verify(engine)).ok
    with pytest.raises(NotFound):
        await RevocationStore(engine).mark_revoked("no-such-dataset", utcnow())


async def test_stored_responses_change_only_to_scrub_a_revoked_dataset(
    engine: AsyncEngine, catalog: CatalogStore, ledger: HitLedger
) -> None:
    """The database itself allows the one exception and nothing more."""
    await _history(catalog, ledger)
    refused = {
        # `cases` is not revoked: its responses may not change.
        "UPDATE queries SET response = :r WHERE query_id = 'q2'": "revoked dataset",
        "UPDATE queries SET cost_micros = 0 WHERE query_id = 'q1'": "append-only",
        "DELETE FROM queries WHERE query_id = 'q1'": "append-only",
    }
    for sql, message in refused.items():
        with pytest.raises(DBAPIError, match=message):
            async with engine.begin() as conn:
                await conn.execute(text(sql), {"r": b"{}"})
    await RevocationStore(engine).mark_revoked("guides", utcnow())
    with pytest.raises(DBAPIError, match="append-only"):  # still only the response column
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE queries SET request_hash = 'x' WHERE query_id = 'q1'"))
    assert (await verify(engine)).ok


async def test_receipts_are_kept_append_only_and_verified(
    engine: AsyncEngine, catalog: CatalogStore, tmp_path: Path
) -> None:
    await seed_dataset(catalog, "guides")
    signer = ReceiptSigner.load_or_create(tmp_path / "key.pem")
    claims = RevocationClaims(
        revocation_id="rev-1",
        dataset_id="guides",
        owner_id="acme",
        issued_at=T0,
        coverage="every-region",
        regions_visited=["eu", "sg"],
        regions=[RegionRemoval(region="eu", revoked_at=T0, stores=[])],
    )
    receipt = revocation_receipt(signer.sign_revocation(claims), signer.jwks())
    assert receipt.claims == claims and receipt.key_id == signer.key_id
    store = RevocationStore(engine)
    await store.record(receipt)
    await store.record(receipt)  # again: kept once
    assert await store.receipts("guides") == [receipt.jws]
    assert await store.receipts("other") == []
    with pytest.raises(DBAPIError, match="append-only"):
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM revocations"))
    # A search receipt cannot pass for a deletion receipt, nor an altered one for either.
    other = ReceiptSigner.load_or_create(tmp_path / "other.pem")
    with pytest.raises(ReceiptInvalid, match="no Ed25519 key"):
        revocation_receipt(receipt.jws, other.jwks())
    header, payload, signature = receipt.jws.split(".")
    with pytest.raises(ReceiptInvalid, match="does not match"):
        revocation_receipt(f"{header}.{payload[:-2]}AA.{signature}", signer.jwks())
    search = ReceiptClaims(
        query_id="q", customer_id="cus_1", issued_at=T0, currency="USD", cost_micros=0, hits=[]
    )
    search_header = signer.sign(search).split(".")[0]
    with pytest.raises(ReceiptInvalid, match="not a deletion receipt"):
        revocation_receipt(f"{search_header}.{payload}.{signature}", signer.jwks())
