"""HTTP-level fixtures: the real app over the demo runtime, and keys of every role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio

from service.app import create_app
from service.runtime import Runtime
from tests.conftest import asgi_client


@dataclass(frozen=True)
class Keys:
    agent: str
    agent_customer: str
    other_agent: str
    owner: str
    owner_id: str
    admin: str

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


@pytest_asyncio.fixture(scope="session")
async def keys(demo_runtime: Runtime) -> Keys:
    owners = await demo_runtime.catalog.list_owners()
    agent, agent_key = await demo_runtime.keys.create_key(customer="test-agent", role="agent")
    _, other = await demo_runtime.keys.create_key(customer="other-agent", role="agent")
    _, owner_key = await demo_runtime.keys.create_key(
        customer="test-owner", role="owner", owner_id=owners[0].id
    )
    _, admin = await demo_runtime.keys.create_key(customer="test-admin", role="admin")
    return Keys(agent_key, agent.customer_id, other, owner_key, owners[0].id, admin)


@pytest_asyncio.fixture(scope="session")
async def client(demo_runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_app(runtime=demo_runtime)) as test_client:
        yield test_client


@pytest.fixture
def demo_runtime_settings_env(demo_runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point in-process CLI commands at the demo runtime's data dir."""
    monkeypatch.setenv("FAIRSHARE_DATA_DIR", str(demo_runtime.settings.data_dir))
