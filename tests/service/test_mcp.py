"""The MCP server as an agent meets it: a real subprocess, driven by the `mcp` SDK's own client
over stdio and over streamable HTTP, charging the same ledger as `POST /v1/search`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from ledger.receipts import verify_receipt
from service.runtime import Runtime

STARTUP_SECONDS = 120
REPO = Path(__file__).resolve().parents[2]
TRANSPORTS = ["stdio", "http"]
QUERY = "statute of limitations for contract claims"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_env(demo_runtime: Runtime, **extra: str) -> dict[str, str]:
    return {**os.environ, "FAIRSHARE_DATA_DIR": str(demo_runtime.settings.data_dir), **extra}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "service.mcp_server", *args]


@pytest.fixture(scope="module")
def http_server(demo_runtime: Runtime) -> Iterator[str]:
    """`python -m service.mcp_server --transport http` on a free port; yields the MCP URL."""
    port = _free_port()
    env = {k: v for k, v in _server_env(demo_runtime).items() if k != "FAIRSHARE_API_KEY"}
    process = subprocess.Popen(
        _command("--transport", "http", "--host", "127.0.0.1", "--port", str(port)),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"MCP server exited with {process.returncode}:\n{output}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("MCP server did not start listening")
            time.sleep(0.25)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
async def agent_key(demo_runtime: Runtime) -> str:
    _, key = await demo_runtime.keys.create_key(customer="mcp-agent", role="agent")
    return key


@asynccontextmanager
async def connect(
    transport: str, api_key: str, demo_runtime: Runtime, request: pytest.FixtureRequest
) -> AsyncIterator[Client]:
    """A connected SDK client: stdio launches its own server with the key in its environment;
    http talks to the shared server and sends the key as a bearer token on every request."""
    if transport == "stdio":
        params = StdioServerParameters(
            command=sys.executable,
            args=_command("--transport", "stdio")[1:],
            env=_server_env(demo_runtime, FAIRSHARE_API_KEY=api_key),
            cwd=REPO,
        )
        async with Client(params, read_timeout_seconds=STARTUP_SECONDS) as client:
            yield client
    else:
        url: str = request.getfixturevalue("http_server")
        # The SDK's documented way to set headers: hand the transport a configured client.
        http = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {api_key}"}, timeout=STARTUP_SECONDS
        )
        async with http, Client(streamable_http_client(url, http_client=http)) as client:
            yield client


def _structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def _error_text(result: CallToolResult) -> str:
    assert result.is_error
    return " ".join(block.text for block in result.content if isinstance(block, TextContent))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_paid_search_is_recorded_and_replays(
    transport: str, agent_key: str, demo_runtime: Runtime, request: pytest.FixtureRequest
) -> None:
    async with connect(transport, agent_key, demo_runtime, request) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == {"search_licensed_data", "list_datasets", "get_passage"}
        search_schema = tools["search_licensed_data"].input_schema
        assert search_schema["required"] == ["query"]
        assert set(search_schema["properties"]) == {
            "query",
            "top_k",
            "datasets",
            "max_cost_micros",
            "intended_use",
            "idempotency_key",
            "languages",
        }
        assert tools["get_passage"].input_schema["required"] == ["chunk_id"]

        arguments = {"query": QUERY, "top_k": 3, "idempotency_key": f"mcp-{transport}-1"}
        body = _structured(await client.call_tool("search_licensed_data", arguments))
        results = body["results"]
        assert len(results) == 3
        assert all(r["citation"]["attribution"] for r in results)
        hits = await demo_runtime.hits.hits_for_query(body["query_id"])
        assert [(h.chunk_id, h.price_micros) for h in hits] == [
            (r["chunk_id"], r["price_micros"]) for r in results
        ]
        assert body["cost_micros"] == sum(h.price_micros for h in hits)
        claims = verify_receipt(body["receipt"], demo_runtime.receipts.jwks())
        assert claims.query_id == body["query_id"]
        assert claims.cost_micros == body["cost_micros"]

        recorded = await demo_runtime.hits.count_hits()
        replay = _structured(await client.call_tool("search_licensed_data", arguments))
        assert replay == body
        assert await demo_runtime.hits.count_hits() == recorded

        # The passage just bought is readable through get_passage, with the same citation.
        passage = _structured(
            await client.call_tool("get_passage", {"chunk_id": results[0]["chunk_id"]})
        )
        assert passage["purchased"] is True
        assert passage["text"] == results[0]["text"]
        assert passage["citation"] == results[0]["citation"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_catalog_and_bad_input_are_tool_results(
    transport: str, agent_key: str, demo_runtime: Runtime, request: pytest.FixtureRequest
) -> None:
    async with connect(transport, agent_key, demo_runtime, request) as client:
        catalog = _structured(await client.call_tool("list_datasets", {}))
        expected = await demo_runtime.catalog.list_datasets()
        assert [d["id"] for d in catalog["datasets"]] == [d.id for d in expected]
        assert all("price_per_hit_micros" in d["licence"] for d in catalog["datasets"])

        recorded = await demo_runtime.hits.count_hits()
        unknown = await client.call_tool(
            "search_licensed_data", {"query": QUERY, "datasets": ["no-such-dataset"]}
        )
        assert "unknown dataset(s): no-such-dataset" in _error_text(unknown)
        blank = await client.call_tool("search_licensed_data", {"query": "   "})
        assert "query is blank" in _error_text(blank)
        missing = await client.call_tool("get_passage", {"chunk_id": "no-such-chunk"})
        assert "chunk no-such-chunk does not exist" in _error_text(missing)
        # The demo licences do not permit training: nothing is served or charged for it.
        first = expected[0].id
        train = _structured(
            await client.call_tool(
                "search_licensed_data",
                {"query": QUERY, "datasets": [first], "intended_use": "train"},
            )
        )
        assert train["results"] == [] and train["cost_micros"] == 0
        assert [w["dataset_id"] for w in train["withheld"]] == [first]
        resell = await client.call_tool(
            "search_licensed_data", {"query": QUERY, "intended_use": "resell"}
        )
        assert "intended_use" in _error_text(resell)
        klingon = await client.call_tool(
            "search_licensed_data", {"query": QUERY, "languages": ["xx"]}
        )
        assert "unknown language code(s) 'xx'" in _error_text(klingon)
        # The demo catalog is English: asking for German finds nothing and charges nothing.
        german = _structured(
            await client.call_tool("search_licensed_data", {"query": QUERY, "languages": ["de"]})
        )
        assert german["results"] == [] and german["cost_micros"] == 0
        assert await demo_runtime.hits.count_hits() == recorded


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_bad_api_key_is_a_tool_error_and_charges_nothing(
    transport: str, demo_runtime: Runtime, request: pytest.FixtureRequest
) -> None:
    recorded = await demo_runtime.hits.count_hits()
    async with connect(transport, "fs_not-a-real-key", demo_runtime, request) as client:
        result = await client.call_tool("search_licensed_data", {"query": QUERY})
        assert "invalid API key" in _error_text(result)
        catalog = await client.call_tool("list_datasets", {})
        assert "invalid API key" in _error_text(catalog)
    assert await demo_runtime.hits.count_hits() == recorded
