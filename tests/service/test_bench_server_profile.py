"""bench/server_profile.py reads the service's metric names and /proc; check both against the
real app and this process, so a renamed metric breaks this test rather than the next bench run."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.service.conftest import Keys
from tests.service.test_search_api import search

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import server_profile


async def test_stage_sums_split_a_search_by_stage(client: httpx.AsyncClient, keys: Keys) -> None:
    before = server_profile.stage_sums((await client.get("/metrics")).text)
    await search(client, keys.agent, query="bond yields and inflation", top_k=3)
    after = server_profile.stage_sums((await client.get("/metrics")).text)

    spent = {stage: after[stage] - before.get(stage, 0.0) for stage in after}
    assert set(spent) >= {"embed", "retrieve", "rerank", "total", "request"}
    # The request contains the pipeline's total, which contains its embedding and retrieval.
    assert spent["request"] >= spent["total"] >= spent["embed"] + spent["retrieve"] > 0


def test_profile_tells_the_main_thread_from_a_busy_one() -> None:
    burnt, release = threading.Event(), threading.Event()

    def burn() -> None:  # 0.3 s of CPU on a thread that is not the process's first
        started = time.thread_time()
        while time.thread_time() - started < 0.3:
            pass
        burnt.set()
        release.wait()  # alive until read: an ended thread leaves /proc/<pid>/task

    before = server_profile.snapshot(os.getpid(), None)
    worker = threading.Thread(target=burn)
    worker.start()
    burnt.wait()
    after = server_profile.snapshot(os.getpid(), None)
    release.set()
    worker.join()
    profile = server_profile.profile(before, after, requests=1, seconds=1.0)

    assert profile["busiest_other_thread_cpu_ms"] >= 250  # clock ticks are 10 ms
    assert profile["event_loop_cpu_ms"] < profile["busiest_other_thread_cpu_ms"]
    assert profile["server_cpu_ms"] >= profile["busiest_other_thread_cpu_ms"]
    assert profile["latency_ms"] is None  # no metrics were read
