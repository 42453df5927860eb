"""`fairshare serve` with several worker processes on one port, one ledger database.

Workers share the socket (the kernel hands each connection to one of them), read the same index
files, and write one SQLite ledger, so what must hold is what holds with one process: every
answer recorded once, an Idempotency-Key charged once whichever workers its retries reach, one
intact hash chain, /metrics that count every worker, and SIGTERM that leaves no worker behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ledger.verify import verify
from service.runtime import Runtime
from tests.service.load_support import LiveServer

WORKERS = 2
SEARCHES = 24


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _searches_counted(http: httpx.AsyncClient) -> float:
    text = (await http.get("/metrics")).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "fairshare_http_requests_total"
        and s.labels == {"method": "POST", "route": "/v1/search", "status": "200"}
    )


async def test_workers_share_one_port_and_one_ledger(demo_runtime: Runtime, tmp_path: Path) -> None:
    _, key = await demo_runtime.keys.create_key(customer="workers-agent", role="agent")
    auth = {"Authorization": f"Bearer {key}"}
    server = LiveServer(
        {
            "FAIRSHARE_DATA_DIR": str(demo_runtime.settings.data_dir),
            "FAIRSHARE_WORKERS": str(WORKERS),
            "FAIRSHARE_RATE_LIMIT_PER_MINUTE": "0",
        },
        tmp_path / "serve.log",
    )
    await server.start()
    try:
        # One connection per request, so that the kernel spreads them over the workers.
        async def fresh(body: dict[str, object], headers: dict[str, str]) -> httpx.Response:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
                return await http.post("/v1/search", json=body, headers=headers)

        answers = await asyncio.gather(
            *(
                fresh({"query": f"negligence duty of care {n}", "top_k": 3}, auth)
                for n in range(SEARCHES)
            )
        )
        # The same Idempotency-Key four times at once, on four connections: one charge.
        retried = {"query": "non-compete clause enforceability", "top_k": 2}
        replays = await asyncio.gather(
            *(fresh(retried, {**auth, "Idempotency-Key": "workers-1"}) for _ in range(4))
        )
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
            counted = [await _searches_counted(http) for _ in range(4)]
    finally:
        server.stop()

    assert all(a.status_code == 200 for a in answers + replays), [a.text for a in answers]
    for answer in answers:
        body = answer.json()
        hits = await demo_runtime.hits.hits_for_query(body["query_id"])
        assert [h.chunk_id for h in hits] == [r["chunk_id"] for r in body["results"]]
    assert len({r.content for r in replays}) == 1
    assert await demo_runtime.hits.hits_for_query(replays[0].json()["query_id"])
    # Whichever worker answered /metrics, it counted every worker's searches (replays included).
    assert counted == [SEARCHES + 4] * 4

    log = [json.loads(x) for x in server.log_tail(10**7).splitlines() if x.startswith("{")]
    pids = {x["pid"] for x in log if x.get("route") == "/v1/search"}
    assert len(pids) == WORKERS  # both served searches
    assert not any(_alive(pid) for pid in pids)  # and SIGTERM stopped both
    report = await verify(demo_runtime.engine)
    assert report.ok, report.problems


def _serve(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("FAIRSHARE_")}
    fairshare = Path(sys.executable).parent / "fairshare"
    return subprocess.run(
        [str(fairshare), "serve"],
        env={**inherited, "FAIRSHARE_DATA_DIR": str(tmp_path / "data"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_workers_refuse_a_port_another_server_holds(tmp_path: Path) -> None:
    """Workers bind with SO_REUSEPORT, which would otherwise let them share the port silently
    with whatever listens there."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        done = _serve(
            {"FAIRSHARE_WORKERS": "2", "FAIRSHARE_HOST": "127.0.0.1", "FAIRSHARE_PORT": str(port)},
            tmp_path,
        )
    assert done.returncode == 2
    assert f"cannot serve on 127.0.0.1:{port}" in done.stderr


def test_workers_refuse_qdrant_local_mode(tmp_path: Path) -> None:
    done = _serve({"FAIRSHARE_WORKERS": "2", "FAIRSHARE_VECTOR_BACKEND": "qdrant"}, tmp_path)
    assert done.returncode == 2
    assert "Qdrant local mode" in done.stderr and "FAIRSHARE_QDRANT_URL" in done.stderr
