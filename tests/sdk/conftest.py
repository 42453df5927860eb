"""One live `fairshare serve` for the SDK's tests, over a data dir of its own.

Its own data dir and database, not the session's demo runtime: the SDK tests check balances and
statements to the micro, and their hits must not shift the figures other tests read. One demo
dataset is enough to search, and ingests in a few seconds.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from service.demo import load_demo_catalog
from service.runtime import open_runtime
from tests.conftest import make_settings
from tests.service.load_support import LiveServer, new_agent

DATASET = "clinical-guidelines"
QUERY = "antibiotics for community-acquired pneumonia"
# Retrieval is not under test: fewer candidates make each search cheaper on 2 cores.
LIGHT_SEARCH = {"FAIRSHARE_CANDIDATE_DEPTH": "20"}


@dataclass(frozen=True)
class Deployment:
    base_url: str
    database_url: str
    owner_id: str  # owns DATASET
    owner_key: str


@pytest_asyncio.fixture(scope="package")
async def deployment(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployment]:
    data_dir = tmp_path_factory.mktemp("sdk-data")
    settings = make_settings(data_dir)
    async with open_runtime(settings, with_reranker=False) as runtime:
        await load_demo_catalog(runtime, progress=False, only={DATASET})
        (owner,) = await runtime.catalog.list_owners()
        _, owner_key = await runtime.keys.create_key(
            customer="sdk-owner", role="owner", owner_id=owner.id
        )
    server = LiveServer(
        {"FAIRSHARE_DATA_DIR": str(data_dir), **LIGHT_SEARCH}, data_dir / "serve.log"
    )
    await server.start()
    try:
        yield Deployment(server.base_url, settings.resolved_database_url, owner.id, owner_key)
    finally:
        server.stop()


@dataclass(frozen=True)
class Agent:
    customer_id: str
    key: str


@pytest_asyncio.fixture
async def agent(deployment: Deployment) -> Agent:
    """A customer of its own for each test, so its balance shows exactly that test's charges."""
    return Agent(*await new_agent(deployment.database_url, f"sdk-{uuid.uuid4().hex[:12]}"))
