"""Session fixtures: the real embedder loaded once, a test cross-encoder, and a demo runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from ranking.embedder import SentenceEmbedder, quiet_model_loading, resolve_model
from service.demo import load_demo_catalog
from service.runtime import Runtime, open_runtime, shared_embedder
from service.settings import Settings, load_settings


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    return load_settings({"FAIRSHARE_DATA_DIR": str(data_dir)}).with_(**overrides)


@pytest.fixture(scope="session")
def embedder() -> SentenceEmbedder:
    return shared_embedder("all-MiniLM-L6-v2")


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
    tmp_path_factory: pytest.TempPathFactory, embedder: SentenceEmbedder
) -> AsyncIterator[Runtime]:
    """The demo catalog ingested once into a throwaway data dir; FAISS serves, Qdrant is written."""
    settings = make_settings(tmp_path_factory.mktemp("demo-data"))
    # The reranker stage is configured off (no FAIRSHARE_RERANKER_MODEL), as on a fresh install.
    async with open_runtime(settings, with_qdrant=True) as runtime:
        await load_demo_catalog(runtime, progress=False)
        yield runtime
