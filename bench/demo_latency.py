"""Latency of a demo search through the real app (ASGI, no network), no reranker.

    .venv/bin/python bench/demo_latency.py [--n 200]

Loads the demo catalog into a throwaway data dir, warms up, then times POST /v1/search with a
rotating set of queries and prints p50/p95 of the client-observed time and of the server's own
`timings_ms.total`, plus the model-only query-embedding time for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from litestar.testing import AsyncTestClient

from service.app import create_app
from service.demo import load_demo_catalog
from service.runtime import open_runtime
from service.settings import load_settings

QUERIES = [
    "antibiotics for community-acquired pneumonia",
    "fluid resuscitation in septic shock",
    "adverse possession of land",
    "enforceability of non-compete clauses",
    "copper supply disruption",
    "semiconductor earnings guidance",
    "anticoagulation in atrial fibrillation",
    "duty of care in negligence",
]


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings({"FAIRSHARE_DATA_DIR": tmp})
        async with open_runtime(settings, with_qdrant=True, with_reranker=False) as runtime:
            await load_demo_catalog(runtime, progress=False)
            _, key = await runtime.keys.create_key(customer="bench", role="agent")
            headers = {"Authorization": f"Bearer {key}"}
            async with AsyncTestClient(app=create_app(runtime=runtime)) as client:
                for q in QUERIES:
                    await client.post("/v1/search", json={"query": q, "top_k": 10}, headers=headers)
                client_ms, server_ms = [], []
                for i in range(n):
                    started = time.perf_counter()
                    response = await client.post(
                        "/v1/search",
                        json={"query": QUERIES[i % len(QUERIES)], "top_k": 10},
                        headers=headers,
                    )
                    client_ms.append((time.perf_counter() - started) * 1000)
                    server_ms.append(response.json()["timings_ms"]["total"])
            embed_ms = []
            for i in range(n):
                started = time.perf_counter()
                runtime.embedder.embed_queries([QUERIES[i % len(QUERIES)] + f" {i}"])
                embed_ms.append((time.perf_counter() - started) * 1000)
    print(f"demo search, top_k=10, no reranker, n={n}, data dir on {Path(tmp).anchor}")
    print(f"  client-observed  p50 {pct(client_ms, 50):7.2f} ms   p95 {pct(client_ms, 95):7.2f} ms")
    print(f"  server total     p50 {pct(server_ms, 50):7.2f} ms   p95 {pct(server_ms, 95):7.2f} ms")
    print(f"  query embedding  p50 {pct(embed_ms, 50):7.2f} ms   p95 {pct(embed_ms, 95):7.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    asyncio.run(main(parser.parse_args().n))
