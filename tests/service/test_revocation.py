"""Revoking a dataset, end to end: two region partitions in one data dir, a live `fairshare serve`
of region eu, and `fairshare datasets revoke` run while it serves.

The stores are scanned directly, not through our own classes: the FAISS and BM25 id maps on
disk, the Qdrant collection (scrolled with the dataset filter), and the catalog tables with
sqlite3. What the live server still holds in memory is observed through what it answers.
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from qdrant_client import QdrantClient, models

from contracts import ConflictError, Licence, Owner, RevocationReceipt, StoreRemoval
from ingest.run import IngestReport, dataset_lock
from ledger.receipts import verify_revocation_receipt
from ranking.embedder import Embedder
from service.app import create_app
from service.cli import main
from service.revocation import revoke_in_partition
from service.runtime import Runtime, open_runtime
from tests.conftest import asgi_client, make_settings
from tests.service.load_support import LiveServer
from tests.service.test_errors import assert_problem

LICENCE = Licence(
    id="rev-licence",
    name="Revocation test licence",
    currency="USD",
    price_per_hit_micros=1_000,
    owner_share_bps=6_000,
    snippet_cap_chars=300,
    attribution="Source: Press",
)
DOCS = {
    "gone": [
        ("tides", "Tides", "Spring tides come at new and full moon, when sun and moon align."),
        ("neap", "Neap tides", "Neap tides, the weakest, come at the moon's first quarter."),
        ("surge", "Storm surge", "A storm surge on a spring tide floods low coasts."),
    ],
    "keep": [
        ("lava", "Lava", "Basaltic lava flows far from volcanic fissures before it cools."),
        ("ash", "Ash", "Volcanic ash grounds aircraft because it melts inside jet engines."),
    ],
    "gone-here": [
        ("bees", "Bees", "Honey bees pollinate orchards and dance to tell where flowers are."),
        ("wasps", "Wasps", "Fig wasps pollinate figs from inside the closed flower."),
    ],
}
# Region -> the datasets its partition holds. The live server serves eu.
REGIONS = {"eu": ["gone", "keep", "gone-here"], "ap": ["gone", "gone-here"]}
TIDES = {"query": "spring tides at new moon", "top_k": 5}
BEES = {"query": "honey bees pollinate orchards", "top_k": 5}


@dataclass(frozen=True)
class World:
    data_dir: Path
    agent: str
    owner: str  # the key of `press`, which owns every dataset here
    rival: str  # another owner's key
    admin: str
    base_url: str

    def partition(self, region: str) -> Path:
        return self.data_dir / "regions" / region


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _seed(data_dir: Path, sources: Path) -> dict[str, str]:
    keys: dict[str, str] = {}
    for region, dataset_ids in REGIONS.items():
        settings = make_settings(data_dir, region=region)
        async with open_runtime(settings, with_qdrant=True, with_reranker=False) as runtime:
            await runtime.catalog.add_owner(Owner(id="press", name="Press"))
            for dataset_id in dataset_ids:
                report = await add_and_ingest(runtime, dataset_id, sources)
                assert not report.errors and report.chunks_written == len(DOCS[dataset_id])
            if region == "eu":
                await runtime.catalog.add_owner(Owner(id="rival", name="Rival"))
                make = runtime.keys.create_key
                keys["agent"] = (await make(customer="rev-agent", role="agent"))[1]
                keys["owner"] = (await make(customer="rev-press", role="owner", owner_id="press"))[
                    1
                ]
                keys["rival"] = (await make(customer="rev-rival", role="owner", owner_id="rival"))[
                    1
                ]
                keys["admin"] = (await make(customer="rev-admin", role="admin"))[1]
    return keys


async def add_and_ingest(runtime: Runtime, dataset_id: str, sources: Path) -> IngestReport:
    """Register `dataset_id` (owned by "press") and ingest its DOCS."""
    await runtime.catalog.add_dataset(
        dataset_id=dataset_id, owner_id="press", name=dataset_id, description="", licence=LICENCE
    )
    source = sources / f"{dataset_id}.jsonl"
    source.write_text(
        "".join(json.dumps({"id": i, "title": t, "text": x}) + "\n" for i, t, x in DOCS[dataset_id])
    )
    return await runtime.ingest(source, dataset_id, progress=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp("revocation") / "data"
    keys = asyncio.run(_seed(data_dir, data_dir.parent))
    server = LiveServer(
        {"FAIRSHARE_DATA_DIR": str(data_dir), "FAIRSHARE_REGION": "eu"},
        data_dir.parent / "serve.log",
    )
    asyncio.run(server.start())
    try:
        yield World(
            data_dir, keys["agent"], keys["owner"], keys["rival"], keys["admin"], server.base_url
        )
    finally:
        server.stop()


@dataclass(frozen=True)
class Held:
    """What one region's partition holds of one dataset, read straight from the stores."""

    documents: int
    chunks: int
    faiss: set[str]  # chunk ids in the FAISS id maps
    faiss_files: int
    bm25: set[str]  # chunk ids in the BM25 id maps, every language
    bm25_files: int
    qdrant: int  # points with this dataset_id
    delivered: int  # stored responses (queries) with a hit on it

    @property
    def empty(self) -> bool:
        return not (self.documents or self.chunks or self.faiss or self.bm25 or self.qdrant)


def scan(world: World, region: str, dataset_id: str) -> Held:
    partition = world.partition(region)
    index_files: dict[str, list[Path]] = {
        name: [p for p in (partition / name / dataset_id).rglob("*") if p.is_file()]
        for name in ("faiss", "bm25")
    }
    ids = {
        name: {i for p in files if p.name == "ids.json" for i in json.loads(p.read_text())}
        for name, files in index_files.items()
    }
    client = QdrantClient(path=str(partition / "qdrant"))
    try:
        points, _ = client.scroll(
            f"chunks_{region}",
            scroll_filter=models.Filter(
                must=[
                    models.FieldCondition(
                        key="dataset_id", match=models.MatchValue(value=dataset_id)
                    )
                ]
            ),
            limit=10_000,
        )
    finally:
        client.close()
    with sqlite3.connect(partition / "fairshare.db") as db:
        count = lambda sql: db.execute(sql, (dataset_id,)).fetchone()[0]  # noqa: E731
        documents = count("SELECT count(*) FROM documents WHERE dataset_id = ?")
        chunks = count("SELECT count(*) FROM chunks WHERE dataset_id = ?")
        delivered = count("SELECT count(DISTINCT query_id) FROM hits WHERE dataset_id = ?")
    return Held(
        documents,
        chunks,
        ids["faiss"],
        len(index_files["faiss"]),
        ids["bm25"],
        len(index_files["bm25"]),
        len(points),
        delivered,
    )


def hits_of(world: World, region: str, dataset_id: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(world.partition(region) / "fairshare.db") as db:
        return db.execute(
            "SELECT query_id, rank, chunk_id, price_micros FROM hits WHERE dataset_id = ? "
            "ORDER BY query_id, rank",
            (dataset_id,),
        ).fetchall()


def assert_counts_match(stores: list[StoreRemoval], held: Held) -> None:
    """The receipt's figures for one region are what the scan found there before."""
    by_store = {(s.store, tuple(s.names)): s for s in stores}
    assert by_store["catalog", ("documents",)].items == held.documents > 0
    assert by_store["catalog", ("chunks",)].items == held.chunks > 0
    faiss, bm25 = by_store["faiss", ()], by_store["bm25", ()]
    assert (faiss.items, faiss.files) == (len(held.faiss), held.faiss_files)
    assert (bm25.items, bm25.files) == (len(held.bm25), held.bm25_files)
    assert faiss.bytes > 0 and bm25.bytes > 0
    qdrant = next(s for s in stores if s.store == "qdrant")
    assert qdrant.items == held.qdrant == held.chunks
    assert by_store["responses", ("queries.response",)].items == held.delivered


def datasets_in(results: list[dict[str, Any]]) -> set[str]:
    return {r["citation"]["dataset_id"] for r in results}


class Terminal(io.StringIO):
    """Stdin as an operator's terminal, holding what they type."""

    def isatty(self) -> bool:
        return True


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_revoke_empties_every_region_while_a_live_server_keeps_serving(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIRSHARE_DATA_DIR", str(world.data_dir))
    monkeypatch.setenv("FAIRSHARE_REGION", "eu")
    http = httpx.Client(base_url=world.base_url, timeout=60)
    agent = auth(world.agent)
    bought = http.post("/v1/search", json=TIDES, headers={**agent, "Idempotency-Key": "tides-1"})
    assert bought.status_code == 200, bought.text
    delivered = [r for r in bought.json()["results"] if r["citation"]["dataset_id"] == "gone"]
    assert delivered and all(r["text"] for r in delivered)
    held = {region: scan(world, region, "gone") for region in ("eu", "ap")}
    assert not held["eu"].empty and not held["ap"].empty
    keep = scan(world, "eu", "keep")
    hits = hits_of(world, "eu", "gone")

    # Irreversible, so never by accident: a script must say --yes, and at a terminal the
    # operator must type the dataset id back.
    status, out, err = run_cli(capsys, "datasets", "revoke", "gone")
    assert (status, out) == (2, "") and "pass --yes" in err
    monkeypatch.setattr("sys.stdin", Terminal("keep\n"))
    status, out, err = run_cli(capsys, "datasets", "revoke", "gone")
    assert (status, out) == (1, "") and "Type the dataset id" in err and "nothing revoked" in err
    assert {region: scan(world, region, "gone") for region in ("eu", "ap")} == held

    monkeypatch.setattr("sys.stdin", Terminal("gone\n"))
    status, out, err = run_cli(capsys, "datasets", "revoke", "gone")
    assert status == 0, err
    receipt = msgspec.json.decode(out, type=RevocationReceipt)
    claims = verify_revocation_receipt(receipt.jws, http.get("/v1/keys/receipts").json())
    assert claims == receipt.claims
    assert (claims.dataset_id, claims.owner_id, claims.coverage) == (
        "gone",
        "press",
        "every-region",
    )
    assert sorted(claims.regions_visited) == ["ap", "eu"]
    assert sorted(r.region for r in claims.regions) == ["ap", "eu"]
    for removal in claims.regions:
        assert_counts_match(removal.stores, held[removal.region])
        assert scan(world, removal.region, "gone").empty  # nothing of it in any store
    assert scan(world, "eu", "keep") == keep

    # The running server (FAISS loaded, no restart) stops returning it on the next search.
    after = http.post("/v1/search", json=TIDES, headers=agent)
    assert after.status_code == 200, after.text
    assert after.json()["results"] and "gone" not in datasets_in(after.json()["results"])
    named = http.post("/v1/search", json={**TIDES, "datasets": ["gone"]}, headers=agent).json()
    assert (named["results"], named["cost_micros"]) == ([], 0)
    assert [w["dataset_id"] for w in named["withheld"]] == ["gone"]
    kept = http.post("/v1/search", json={**TIDES, "query": "volcanic ash"}, headers=agent)
    assert "keep" in datasets_in(kept.json()["results"])

    # A replay of the old purchase: same query and charges, without the revoked text.
    replay = http.post("/v1/search", json=TIDES, headers={**agent, "Idempotency-Key": "tides-1"})
    assert replay.status_code == 200 and replay.json()["query_id"] == bought.json()["query_id"]
    assert replay.json()["cost_micros"] == bought.json()["cost_micros"]
    for result in replay.json()["results"]:
        if result["citation"]["dataset_id"] == "gone":
            assert (result["text"], result["citation"]["title"]) == ("", "")
    assert all(r["text"] not in replay.text for r in delivered)

    # The ledger keeps every hit, verifies, and the owner's statement still counts them.
    assert hits_of(world, "eu", "gone") == hits
    assert run_cli(capsys, "ledger", "verify")[0] == 0
    period = f"{datetime.now(UTC):%Y-%m}"
    statement = http.get(f"/v1/owners/press/statement?period={period}", headers=auth(world.owner))
    lines = {d["dataset_id"]: d["hit_count"] for d in statement.json()["datasets"]}
    assert lines["gone"] == len(hits)

    # Its owner and admins read the receipt; agents are no longer offered the dataset.
    for key in (world.owner, world.admin, world.rival, world.agent):
        kept_receipts = http.get("/v1/datasets/gone/revocations", headers=auth(key))
        if key in (world.owner, world.admin):
            assert [r["jws"] for r in kept_receipts.json()] == [receipt.jws]
        else:
            assert_problem(kept_receipts, 403)
    offered = {d["id"]: d for d in http.get("/v1/datasets", headers=agent).json()}
    assert "gone" not in offered and "keep" in offered
    owned = {d["id"]: d for d in http.get("/v1/datasets", headers=auth(world.owner)).json()}
    assert owned["gone"]["revoked_at"] is not None and owned["gone"]["chunk_count"] == 0

    # Revoking again hands back the same receipt; ingesting again is refused.
    status, out, _ = run_cli(capsys, "datasets", "revoke", "gone", "--yes")
    assert status == 0 and msgspec.json.decode(out, type=RevocationReceipt).jws == receipt.jws
    source = world.data_dir.parent / "gone.jsonl"
    status, _, err = run_cli(capsys, "ingest", "--dataset", "gone", str(source), "--no-progress")
    assert status == 2 and "was revoked" in err
    assert scan(world, "eu", "gone").empty


def test_admin_route_revokes_only_in_its_servers_region(world: World) -> None:
    http = httpx.Client(base_url=world.base_url, timeout=60)
    agent = auth(world.agent)
    found = http.post("/v1/search", json=BEES, headers=agent)
    assert "gone-here" in datasets_in(found.json()["results"])
    eu, ap = scan(world, "eu", "gone-here"), scan(world, "ap", "gone-here")
    path = "/v1/admin/datasets/gone-here/revoke"

    assert_problem(http.post(path, headers=agent), 403)
    assert_problem(http.post(path, headers=auth(world.owner)), 403)
    assert_problem(
        http.post("/v1/admin/datasets/no-such-dataset/revoke", headers=auth(world.admin)), 404
    )
    assert scan(world, "eu", "gone-here") == eu  # refused calls removed nothing

    revoked = http.post(path, headers=auth(world.admin))
    assert revoked.status_code == 201, revoked.text
    receipt = msgspec.json.decode(revoked.content, type=RevocationReceipt)
    claims = verify_revocation_receipt(receipt.jws, http.get("/v1/keys/receipts").json())
    assert (claims.coverage, claims.regions_visited) == ("region", ["eu"])
    (removal,) = claims.regions
    assert removal.region == "eu"
    assert_counts_match(removal.stores, eu)
    assert scan(world, "eu", "gone-here").empty
    assert scan(world, "ap", "gone-here") == ap  # a server never touches another region
    assert "gone-here" not in datasets_in(
        http.post("/v1/search", json=BEES, headers=agent).json()["results"]
    )

    again = http.post(path, headers=auth(world.admin))
    assert again.status_code == 200 and again.json()["jws"] == receipt.jws


async def test_a_server_forgets_what_it_loaded_of_a_dataset_another_process_revoked(
    tmp_path: Path, embedder: Embedder, test_reranker_path: Path
) -> None:
    """Two runtimes on one partition: `server` has searched (FAISS and BM25 loaded, rerank
    scores cached), `revoker` revokes. The server's next catalog snapshot drops all of it."""
    settings = make_settings(tmp_path / "data")
    sources = tmp_path / "sources"
    sources.mkdir()
    async with open_runtime(settings, with_qdrant=True, with_reranker=False) as revoker:
        await revoker.catalog.add_owner(Owner(id="press", name="Press"))
        for dataset_id in ("gone", "keep"):
            await add_and_ingest(revoker, dataset_id, sources)
        with_reranker = settings.with_(
            reranker_model=str(test_reranker_path), reranker_backend="torch"
        )
        async with open_runtime(with_reranker, with_qdrant=False) as server:
            _, key = await server.keys.create_key(customer="rev-server", role="agent")
            async with asgi_client(create_app(runtime=server)) as client:
                for query in ("spring tides moon", "volcanic ash aircraft"):
                    response = await client.post(
                        "/v1/search", json={"query": query, "top_k": 5}, headers=auth(key)
                    )
                    assert response.status_code == 200 and response.json()["reranked"], (
                        response.text
                    )
            generations = (await server.snapshot()).generations
            gone_ids = {c.chunk_id for c in await revoker.catalog.chunk_texts("gone")}
            keep_ids = {c.chunk_id for c in await revoker.catalog.chunk_texts("keep")}
            reranker = server.reranker.reranker
            assert reranker is not None and gone_ids & reranker.cache.chunk_ids()

            with (
                dataset_lock(revoker.lock_dir, "gone"),  # an ingest of it is running
                pytest.raises(ConflictError, match="being ingested or revoked"),
            ):
                await revoke_in_partition(revoker, "gone")
            assert "gone" in await revoker.catalog.serving_state()  # nothing happened

            await revoke_in_partition(revoker, "gone")
            vector = server.embedder.embed_queries(["spring tides moon"])[0]

            def served(dataset: str) -> set[str]:
                dense = server.faiss.search(vector, 10, {dataset: generations[dataset]})
                lexical = server.lexical.search(
                    "spring tides moon", 10, {dataset: generations[dataset]}
                )
                return {c for c, _ in dense + lexical}

            # Files and rows are gone, but what the server loaded is still in its memory...
            assert served("gone") == gone_ids
            await server.snapshot()
            # ...until its next snapshot, which sees the dataset is no longer served.
            assert served("gone") == set()
            assert served("keep") == keep_ids
            assert not gone_ids & reranker.cache.chunk_ids()
            assert keep_ids & reranker.cache.chunk_ids()
