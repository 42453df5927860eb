"""A real `fairshare serve` process on a real port, searched over real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.runtime import Runtime
from tests.service.conftest import Keys
from tests.service.load_support import LiveServer

STARTUP_SECONDS = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def live_server(demo_runtime: Runtime) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "FAIRSHARE_DATA_DIR": str(demo_runtime.settings.data_dir),
        "FAIRSHARE_PORT": str(port),
    }
    fairshare = Path(sys.executable).parent / "fairshare"
    process = subprocess.Popen(
        [str(fairshare), "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"fairshare serve exited with {process.returncode}:\n{output}")
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("fairshare serve did not become ready")
            time.sleep(0.25)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


async def test_search_over_real_http_is_recorded(
    live_server: str, keys: Keys, demo_runtime: Runtime
) -> None:
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        response = await http.post(
            "/v1/search",
            json={"query": "statute of limitations for contract claims", "top_k": 3},
            headers={"Authorization": f"Bearer {keys.agent}", "Idempotency-Key": "live-1"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["results"]) == 3
        hits = await demo_runtime.hits.hits_for_query(body["query_id"])
        assert [h.chunk_id for h in hits] == [r["chunk_id"] for r in body["results"]]

        replay = await http.post(
            "/v1/search",
            json={"query": "statute of limitations for contract claims", "top_k": 3},
            headers={"Authorization": f"Bearer {keys.agent}", "Idempotency-Key": "live-1"},
        )
        assert replay.content == response.content

        bad = await http.post(
            "/v1/search", content=b"{oops", headers={"Authorization": f"Bearer {keys.agent}"}
        )
        assert bad.status_code == 400 and bad.headers["content-type"].startswith(
            "application/problem+json"
        )


async def test_sigterm_finishes_in_flight_searches_and_commits_them(
    demo_runtime: Runtime, keys: Keys, tmp_path: Path
) -> None:
    server = LiveServer(
        {"FAIRSHARE_DATA_DIR": str(demo_runtime.settings.data_dir)}, tmp_path / "serve.log"
    )
    await server.start()
    stopped_at: list[float] = []
    done_at: dict[int, float] = {}

    async def one(http: httpx.AsyncClient, n: int) -> httpx.Response | None:
        try:
            response = await http.post(
                "/v1/search",
                json={"query": f"contract damages remedies {n}", "top_k": 3},
                headers={"Authorization": f"Bearer {keys.agent}"},
            )
        except httpx.TransportError:
            return None  # arrived after the listener closed: refused, never processed
        done_at[n] = time.monotonic()
        if not stopped_at:
            stopped_at.append(time.monotonic())
            await asyncio.to_thread(server.stop)  # SIGTERM while the others are in flight
        return response

    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        responses = await asyncio.gather(*(one(http, n) for n in range(16)))
    answered = [r for r in responses if r is not None]
    assert answered and all(r.status_code == 200 for r in answered), [r.text for r in answered]
    assert any(t > stopped_at[0] for t in done_at.values())  # finished after SIGTERM
    for response in answered:
        body = response.json()
        recorded = await demo_runtime.hits.hits_for_query(body["query_id"])
        assert [h.chunk_id for h in recorded] == [r["chunk_id"] for r in body["results"]]
    log_lines = [json.loads(x) for x in server.log_tail(10**7).splitlines() if x.startswith("{")]
    logged = {x["query_id"] for x in log_lines if x.get("route") == "/v1/search"}
    assert {r.json()["query_id"] for r in answered} <= logged
