"""Session fixtures: the real embedder loaded once, a test cross-encoder, and a demo runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from litestar import Litestar

from contracts import Licence
from ranking.embedder import Embedder, quiet_model_loading, resolve_model
from service.demo import load_demo_catalog
from service.runtime import Runtime, open_runtime, shared_embedder
from service.settings import Settings, load_settings
from tests.postgres import PostgresUnavailable, postgres_server

# A licence with nothing to test in it, for tests about ranking and ingest rather than terms.
PLAIN_LICENCE = Licence(
    id="l",
    name="l",
    currency="USD",
    price_per_hit_micros=1,
    owner_share_bps=5000,
    snippet_cap_chars=500,
    attribution="a",
)


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    return load_settings({"FAIRSHARE_DATA_DIR": str(data_dir)}).with_(**overrides)


@pytest.fixture(scope="session")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    """The embedder every runtime of this session shares: the configured default backend."""
    backend = load_settings({}).embedder_backend
    return shared_embedder("all-MiniLM-L6-v2", backend, tmp_path_factory.mktemp("embedder-onnx"))


@pytest.fixture(scope="session")
def torch_embedder() -> Embedder:
    """sentence-transformers itself: the reference the ONNX backends are checked against."""
    return shared_embedder("all-MiniLM-L6-v2", "torch")


@pytest.fixture(scope="session")
def test_reranker_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cross-encoder built from the packaged MiniLM encoder with a fresh, seeded scoring head.

    No pretrained cross-encoder can be downloaded here, so this model exercises the rerank stage
    (loading, batching, reordering, reporting) but says nothing about rerank *quality*.
    """
    quiet_model_loading()
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(1234)
    model = CrossEncoder(resolve_model(None), num_labels=1, device="cpu")
    path = tmp_path_factory.mktemp("reranker") / "minilm-cross-encoder"
    model.save(str(path))
    return path


@pytest_asyncio.fixture(scope="session")
async def demo_runtime(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> AsyncIterator[Runtime]:
    """The demo catalog ingested once into a throwaway data dir; FAISS serves, Qdrant is written."""
    settings = make_settings(tmp_path_factory.mktemp("demo-data"))
    # The reranker stage is configured off (no FAIRSHARE_RERANKER_MODEL), as on a fresh install.
    async with open_runtime(settings, with_qdrant=True) as runtime:
        await load_demo_catalog(runtime, progress=False)
        yield runtime


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | PostgresUnavailable]:
    try:
        with postgres_server() as url:
            yield url
    except PostgresUnavailable as exc:
        yield exc


@asynccontextmanager
async def asgi_client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """Real HTTP requests through the ASGI app, in the test's own event loop, so pooled asyncpg
    connections opened by fixtures stay on the loop that owns them. The app must have been built
    with its runtime (`create_app(runtime=...)`), so no lifespan needs to run."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client
