"""bench/search_floor.py reaches into the pipeline, the catalog and the ledger; run it on the demo
catalog so that a change to any of them breaks this test, not the next benchmark run."""

from __future__ import annotations

import sys
from pathlib import Path

from ranking.embedder import Embedder
from service.runtime import Runtime

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import search_floor

TOPICS = ["antibiotics", "pneumonia", "sepsis", "asthma", "negligence", "contract breach"]
TOPICS += ["tenancy", "appeal", "bond yields", "inflation", "earnings", "credit risk"]
QUERIES = [
    f"{kind} {topic}" for kind in ("treatment of", "risk of", "notes on") for topic in TOPICS
]


async def test_the_floor_bench_times_every_stage(demo_runtime: Runtime, embedder: Embedder) -> None:
    floor = await search_floor.measure(demo_runtime.settings.data_dir, QUERIES, embedder)

    assert floor["queries"] == len(QUERIES) - search_floor.WARM
    stages = floor["stages_cpu_ms"]
    assert set(stages) == {
        "query_language",
        "retrieval_and_fusion",
        "passages",
        "ledger",
        "receipt",
    }
    assert all(ms > 0 for ms in stages.values())
    assert floor["model_cpu_ms"] > 0
