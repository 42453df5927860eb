"""Residency regions: one partition per region, ingest refused where the licence does not allow
it, searches bounded by the serving region and the customer's jurisdiction, every hit audited
with both, statements by region, and the residency report.

Two regions, `eu` and `sg`, share one data dir (the development layout). A live `fairshare
serve` in `sg` is watched with inotify, which reports any process opening, reading or changing
anything under `eu`'s partition.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import pytest_asyncio
from inotify_simple import INotify, flags
from qdrant_client import QdrantClient
from sqlalchemy import select

from contracts import ForbiddenError, Licence, Owner
from ledger.customers import CustomerAccounts
from ledger.schema import hits
from ranking.embedder import Embedder
from service.app import create_app
from service.cli import main
from service.runtime import open_runtime
from service.settings import Settings
from tests.conftest import asgi_client, make_settings
from tests.service.load_support import LiveServer

EU_DOCS = [
    {"id": "e1", "title": "Tidal barrages", "text": "Tidal barrages flood estuaries at high tide."},
    {"id": "e2", "title": "North Sea wind", "text": "Offshore wind farms ring the North Sea."},
]
SG_DOCS = [
    {
        "id": "s1",
        "title": "Monsoon floods",
        "text": "Monsoon rains flood low streets at high tide.",
    },
    {
        "id": "s2",
        "title": "Reservoirs",
        "text": "Marina reservoir holds back tide and flood water.",
    },
    {"id": "s3", "title": "Hawker centres", "text": "Hawker centres serve laksa and satay."},
]
# Words both regions' documents share: a server that could see `eu` would find e1 too.
QUERY = "flood at high tide"


def licence(name: str, currency: str, **terms: Any) -> Licence:
    return Licence(
        id=f"{name}-{uuid.uuid4().hex[:8]}",
        name=name,
        currency=currency,
        price_per_hit_micros=2_000,
        owner_share_bps=7_000,
        snippet_cap_chars=300,
        attribution=f"© {name}",
        **terms,
    )


@dataclass(frozen=True)
class World:
    data: Path
    sg: Settings
    eu: Settings
    sg_agent: str  # a customer in Singapore
    sg_agent_customer: str
    de_agent: str  # a customer in Germany
    sea_owner: str  # owner key of sea-press, whose datasets live in sg
    admin: str


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def write_jsonl(path: Path, docs: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


@pytest_asyncio.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> World:
    data = tmp_path_factory.mktemp("regions")
    sources = tmp_path_factory.mktemp("region-sources")
    base = make_settings(data)
    eu, sg = base.for_region("eu"), base.for_region("sg")
    async with open_runtime(eu, with_qdrant=True, with_reranker=False) as runtime:
        await runtime.catalog.add_owner(Owner(id="eu-press", name="EU Press", currency="EUR"))
        await runtime.catalog.add_dataset(
            dataset_id="eu-news",
            owner_id="eu-press",
            name="EU news",
            description="",
            licence=licence("eu-news", "EUR", processing_regions=["eu"]),
        )
        report = await runtime.ingest(
            write_jsonl(sources / "eu.jsonl", EU_DOCS), "eu-news", progress=False
        )
        assert report.chunks_written == len(EU_DOCS)
    async with open_runtime(sg, with_qdrant=True, with_reranker=False) as runtime:
        await runtime.catalog.add_owner(Owner(id="sea-press", name="SEA Press", currency="USD"))
        sg_source = write_jsonl(sources / "sg.jsonl", SG_DOCS)
        for dataset_id, terms in (
            ("sg-news", {"processing_regions": ["sg", "id"], "territories": ["SG", "ID"]}),
            ("sg-archive", {"processing_regions": ["sg"]}),
            ("eu-only", {"processing_regions": ["eu"]}),  # registered here, never ingested
        ):
            await runtime.catalog.add_dataset(
                dataset_id=dataset_id,
                owner_id="sea-press",
                name=dataset_id,
                description="",
                licence=licence(dataset_id, "USD", **terms),
            )
        for dataset_id in ("sg-news", "sg-archive"):
            assert (
                await runtime.ingest(sg_source, dataset_id, progress=False)
            ).chunks_written == len(SG_DOCS)
        accounts = CustomerAccounts(runtime.engine)
        sg_principal, sg_agent = await runtime.keys.create_key(customer="sg-reader", role="agent")
        await accounts.set_territory("sg-reader", "SG")
        _, de_agent = await runtime.keys.create_key(customer="de-reader", role="agent")
        await accounts.set_territory("de-reader", "DE")
        _, sea_owner = await runtime.keys.create_key(
            customer="sea-staff", role="owner", owner_id="sea-press"
        )
        _, admin = await runtime.keys.create_key(customer="sg-admin", role="admin")
    return World(data, sg, eu, sg_agent, sg_principal.customer_id, de_agent, sea_owner, admin)


def region_dir(world: World, region: str) -> Path:
    return world.data / "regions" / region


class PartitionWatcher:
    """Every open, read, write, create, delete or rename under a directory tree, by any process
    on this machine (inotify watches each directory; a file event names its directory)."""

    MASK = (
        flags.OPEN
        | flags.ACCESS
        | flags.MODIFY
        | flags.ATTRIB
        | flags.CREATE
        | flags.DELETE
        | flags.MOVED_FROM
        | flags.MOVED_TO
    )

    def __init__(self, root: Path) -> None:
        self._inotify = INotify()
        self._dirs = {
            self._inotify.add_watch(str(d), self.MASK): d
            for d in [root, *(p for p in root.rglob("*") if p.is_dir())]
        }

    def events(self) -> list[str]:
        return [
            f"{self._dirs.get(e.wd, '?')}/{e.name}: {', '.join(f.name for f in flags.from_mask(e.mask))}"
            for e in self._inotify.read(timeout=0)
        ]

    def close(self) -> None:
        self._inotify.close()


@pytest.fixture
def eu_watcher(world: World) -> Iterator[PartitionWatcher]:
    watcher = PartitionWatcher(region_dir(world, "eu"))
    yield watcher
    watcher.close()


async def test_ingest_outside_the_licences_regions_is_refused_and_writes_nothing(
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = write_jsonl(tmp_path / "docs.jsonl", SG_DOCS)
    async with open_runtime(world.sg, with_qdrant=True, with_reranker=False) as runtime:
        with pytest.raises(ForbiddenError, match=r"only in region\(s\) eu.*region sg"):
            await runtime.ingest(source, "eu-only")
        dataset = await runtime.catalog.get_dataset("eu-only")
        assert (dataset.document_count, dataset.chunk_count) == (0, 0)
        assert runtime.qdrant is not None
        assert runtime.qdrant.chunk_ids("eu-only", 1) == set()
    partition = region_dir(world, "sg")
    assert not (partition / "faiss" / "eu-only").exists()
    assert not (partition / "bm25" / "eu-only").exists()
    # The CLI says the same and exits 2.
    monkeypatch.setenv("FAIRSHARE_DATA_DIR", str(world.data))
    monkeypatch.setenv("FAIRSHARE_REGION", "sg")
    assert await asyncio.to_thread(main, ["ingest", str(source), "--dataset", "eu-only"]) == 2
    assert "nothing was written" in capsys.readouterr().err
    assert not (partition / "faiss" / "eu-only").exists()


async def test_a_server_in_one_region_never_opens_another_regions_partition(
    world: World, eu_watcher: PartitionWatcher, tmp_path: Path
) -> None:
    # The watcher sees this test's own read, so silence below means nothing was touched.
    next(p for p in region_dir(world, "eu").rglob("ids.json")).read_bytes()
    assert eu_watcher.events(), "inotify saw nothing: the check below would prove nothing"
    server = LiveServer(
        {
            "FAIRSHARE_DATA_DIR": str(world.data),
            "FAIRSHARE_REGION": "sg",
            # Qdrant serves, so the server opens its region's collection (local mode) as well.
            "FAIRSHARE_VECTOR_BACKEND": "qdrant",
            "FAIRSHARE_WORKERS": "1",
            "FAIRSHARE_RATE_LIMIT_PER_MINUTE": "0",
        },
        tmp_path / "serve.log",
    )
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
            answer = await http.post(
                "/v1/search",
                json={"query": QUERY, "top_k": 10, "rerank": False},
                headers=auth(world.sg_agent),
            )
            assert answer.status_code == 200, answer.text
            found = {r["citation"]["dataset_id"] for r in answer.json()["results"]}
            assert found == {"sg-news", "sg-archive"}
            residency = await http.get(
                "/v1/owners/sea-press/residency", headers=auth(world.sea_owner)
            )
            assert residency.status_code == 200, residency.text
            assert residency.json()["regions"] == ["sg"]
            assert (await http.get("/readyz")).json()["region"] == "sg"
            for path in ("/metrics", "/v1/datasets"):
                assert (await http.get(path, headers=auth(world.sg_agent))).status_code == 200
    finally:
        server.stop()
    assert eu_watcher.events() == [], server.log_tail()
    # The sg server's Qdrant holds its own region's collection and no other.
    client = QdrantClient(path=str(region_dir(world, "sg") / "qdrant"))
    try:
        assert [c.name for c in client.get_collections().collections] == ["chunks_sg"]
    finally:
        client.close()


async def test_search_serves_only_what_the_region_and_the_customers_jurisdiction_allow(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        open_runtime(world.sg, with_reranker=False) as runtime,
        asgi_client(create_app(runtime=runtime)) as client,
    ):
        named = {"query": QUERY, "top_k": 10, "datasets": ["sg-news", "sg-archive"]}
        sg = await client.post("/v1/search", json=named, headers=auth(world.sg_agent))
        assert sg.status_code == 200, sg.text
        assert {r["citation"]["dataset_id"] for r in sg.json()["results"]} == {
            "sg-news",
            "sg-archive",
        }
        # sg-news serves SG and ID only: a German customer gets sg-archive, and is told why not.
        de = (await client.post("/v1/search", json=named, headers=auth(world.de_agent))).json()
        assert {r["citation"]["dataset_id"] for r in de["results"]} == {"sg-archive"}
        assert de["withheld"] == [
            {
                "dataset_id": "sg-news",
                "reason": f"licence {(await runtime.catalog.get_dataset('sg-news')).licence.id} "
                "does not allow serving customers in territory DE",
            }
        ]
        assert de["cost_micros"] == 2_000 * len(de["results"])
        # Every hit records the region that processed it and the customer's jurisdiction.
        async with runtime.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(hits.c.region, hits.c.territory, hits.c.dataset_id).where(
                        hits.c.query_id == sg.json()["query_id"]
                    )
                )
            ).all()
        assert rows and {(r.region, r.territory) for r in rows} == {("sg", "SG")}
        period = f"{datetime.now(UTC):%Y-%m}"
        statement = await client.get(
            f"/v1/owners/sea-press/statement?period={period}", headers=auth(world.sea_owner)
        )
        body = statement.json()
        assert [(r["region"], r["hit_count"]) for r in body["regions"]] == [
            ("sg", body["hit_count"])
        ]
        assert body["regions"][0]["gross_micros"] == body["gross_micros"]
        csv = await client.get(
            f"/v1/owners/sea-press/statement?period={period}&format=csv",
            headers=auth(world.sea_owner),
        )
        assert f"sea-press,{period},USD,region,sg,," in csv.text
    # A ledger whose hits carry region and territory still verifies.
    monkeypatch.setenv("FAIRSHARE_DATA_DIR", str(world.data))
    monkeypatch.setenv("FAIRSHARE_REGION", "sg")
    assert await asyncio.to_thread(main, ["ledger", "verify"]) == 0


async def report(monkeypatch: pytest.MonkeyPatch, world: World) -> tuple[int, dict[str, Any]]:
    monkeypatch.setenv("FAIRSHARE_DATA_DIR", str(world.data))
    monkeypatch.setenv("FAIRSHARE_REGION", "sg")
    out = io.StringIO()
    with redirect_stdout(out):
        status = await asyncio.to_thread(main, ["residency", "report", "--json"])
    parsed: dict[str, Any] = json.loads(out.getvalue())
    return status, {d["dataset_id"]: d for d in parsed["datasets"]} | {
        "_regions": parsed["regions"]
    }


async def test_the_residency_report_lists_every_regions_bytes_and_flags_any_outside_its_licence(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, datasets = await report(monkeypatch, world)
    assert status == 0 and datasets["_regions"] == ["eu", "sg"]
    eu_news = datasets["eu-news"]
    assert eu_news["regions"] == ["eu"] and eu_news["outside_licence"] == []
    stores = {(s["store"], tuple(s["names"][:1])): s for s in eu_news["stores"]}
    assert stores["catalog", ("documents",)]["items"] == len(EU_DOCS)
    assert stores["catalog", ("chunks",)]["items"] == len(EU_DOCS)
    assert {s["store"]: s["items"] for s in eu_news["stores"] if s["kind"] != "tables"} == {
        "faiss": len(EU_DOCS),
        "bm25": len(EU_DOCS),
        "qdrant": len(EU_DOCS),
    }
    for s in eu_news["stores"]:
        assert s["region"] == "eu"
        if s["kind"] == "files":
            assert all(name.startswith("regions/eu/") for name in s["names"])
            assert all((world.data / name).is_file() for name in s["names"])
            assert s["bytes"] == sum((world.data / n).stat().st_size for n in s["names"])
        if s["kind"] == "collection":
            assert s["names"] == ["chunks_eu"]
    assert datasets["sg-news"]["regions"] == ["sg"]
    assert datasets["eu-only"]["regions"] == []  # registered in sg, refused, so nothing held

    # The owner moves sg-archive's licence to Indonesia: its bytes in sg are now outside it.
    async with open_runtime(world.sg, with_reranker=False) as runtime:
        await runtime.catalog.add_dataset(
            dataset_id="sg-archive",
            owner_id="sea-press",
            name="sg-archive",
            description="",
            licence=licence("sg-archive", "USD", processing_regions=["id"]),
        )
        async with asgi_client(create_app(runtime=runtime)) as client:
            answer = await client.post(
                "/v1/search",
                json={"query": QUERY, "datasets": ["sg-archive"]},
                headers=auth(world.sg_agent),
            )
        body = answer.json()
        assert (body["results"], body["cost_micros"]) == ([], 0)
        assert "does not allow processing in region sg" in body["withheld"][0]["reason"]
    status, datasets = await report(monkeypatch, world)
    assert status == 1 and datasets["sg-archive"]["outside_licence"] == ["sg"]
    assert datasets["sg-news"]["outside_licence"] == []


async def test_an_owner_reads_its_own_datasets_residency_and_no_other(world: World) -> None:
    async with (
        open_runtime(world.sg, with_reranker=False) as runtime,
        asgi_client(create_app(runtime=runtime)) as client,
    ):
        own = await client.get("/v1/owners/sea-press/residency", headers=auth(world.sea_owner))
        other = await client.get("/v1/owners/eu-press/residency", headers=auth(world.sea_owner))
        assert other.status_code == 403
        report = msgspec.json.decode(own.content)
    assert report["regions"] == ["sg"]
    assert {d["dataset_id"] for d in report["datasets"]} == {"sg-news", "sg-archive", "eu-only"}
    assert all(s["region"] == "sg" for d in report["datasets"] for s in d["stores"])
