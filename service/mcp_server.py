"""Fairshare as an MCP server: paid search, the catalog and single passages as tools for agents.

Every tool runs the same code as the HTTP API, so a search through MCP is priced, recorded in the
hit ledger and receipted exactly like `POST /v1/search` (same idempotency keys, same bytes).

Auth is an API key: over stdio, the one in `FAIRSHARE_API_KEY` (the process belongs to one
agent); over streamable HTTP, the `Authorization: Bearer <key>` header of each request. A
Fairshare error (bad key, bad input, unknown dataset, budget too small) comes back as an MCP tool
error carrying the error's `detail`, never as a protocol error or a crash.

    python -m service.mcp_server --transport stdio
    python -m service.mcp_server --transport http --host 127.0.0.1 --port 8765   # POST /mcp
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any, Literal

import msgspec
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from contracts import AuthError, FairshareError, SearchRequest
from ledger.keys import Principal
from service.auth import require_role
from service.ratelimit import enforce_rate_limit
from service.routes.catalog import chunk_view, offered
from service.runtime import Runtime, open_runtime
from service.searching import check_idempotency_key, run_search
from service.settings import Settings, load_settings

Transport = Literal["stdio", "http"]
TRANSPORTS: tuple[Transport, ...] = ("stdio", "http")
API_KEY_ENV = "FAIRSHARE_API_KEY"
HTTP_PATH = "/mcp"

_decode = msgspec.json.Decoder(dict[str, Any])


class _Credentials:
    """Where a call's API key comes from: the request's header over HTTP, else the stdio key."""

    def __init__(self, stdio_key: str | None) -> None:
        self._stdio_key = stdio_key

    def key(self, ctx: Context) -> str:
        headers = ctx.headers
        if headers is None:  # stdio: no per-request headers, the process has one key
            if not self._stdio_key:
                raise AuthError(f"missing API key: set {API_KEY_ENV} for the MCP server process")
            return self._stdio_key
        header = headers.get("authorization")
        if not header:
            raise AuthError("missing API key: send `Authorization: Bearer <key>`")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("malformed Authorization header: expected `Bearer <key>`")
        return token.strip()


def build_server(runtime: Runtime, *, stdio_api_key: str | None = None) -> MCPServer:
    """The MCP server over an open runtime. `stdio_api_key` authenticates calls that carry no
    HTTP headers (the stdio transport); HTTP calls always use their own Authorization header."""
    credentials = _Credentials(stdio_api_key)
    server: MCPServer = MCPServer(
        "fairshare",
        instructions=(
            "Search licensed datasets. Every passage search_licensed_data returns is a paid hit, "
            "charged to your API key and receipted; show each passage with its citation's "
            "attribution. list_datasets shows terms and prices before you spend."
        ),
    )

    async def principal(ctx: Context) -> Principal:
        # Every tool call spends from the key's rate, as an HTTP request does.
        caller = await runtime.keys.authenticate(credentials.key(ctx))
        await enforce_rate_limit(runtime.limiter, caller.key_id)
        return caller

    @server.tool()
    async def search_licensed_data(
        query: str,
        ctx: Context,
        top_k: int = 5,
        datasets: list[str] | None = None,
        max_cost_micros: int | None = None,
        intended_use: Literal["rag", "display", "summarize", "train"] | None = None,
        idempotency_key: str | None = None,
        languages: list[str] | None = None,
    ) -> dict[str, Any]:
        """Search licensed data; every result is a paid hit charged to your key.

        State intended_use (rag, display, summarize or train; default rag) to get only passages
        whose licence permits that use. languages (ISO 639-1 codes such as "de", or "und") keeps
        only passages in those languages. Returns the passages with their citations (show the
        attribution with each), the total cost in micros, the query_id and a signed receipt.
        Retrying with the same idempotency_key and arguments returns the original answer and
        charges nothing more.
        """
        try:
            caller = await principal(ctx)
            require_role(caller, "agent", "admin")
            request = msgspec.convert(
                {
                    "query": query,
                    "top_k": top_k,
                    "datasets": datasets,
                    "max_cost_micros": max_cost_micros,
                    "intended_use": intended_use,
                    "languages": languages,
                },
                SearchRequest,
            )
            body = await run_search(
                runtime, caller, request, check_idempotency_key(idempotency_key)
            )
        except FairshareError as exc:
            raise ToolError(exc.detail) from exc
        except msgspec.ValidationError as exc:
            raise ToolError(str(exc)) from exc
        return _decode.decode(body)

    @server.tool()
    async def list_datasets(ctx: Context) -> dict[str, Any]:
        """The catalog: datasets, their owners, licence terms and price per hit (free to call)."""
        try:
            caller = await principal(ctx)
            datasets = offered(await runtime.catalog.list_datasets(), caller)
        except FairshareError as exc:
            raise ToolError(exc.detail) from exc
        return {"datasets": msgspec.to_builtins(datasets)}

    @server.tool()
    async def get_passage(chunk_id: str, ctx: Context) -> dict[str, Any]:
        """One passage's citation and price; its text only if your account already paid for it."""
        try:
            view = await chunk_view(runtime, await principal(ctx), chunk_id)
        except FairshareError as exc:
            raise ToolError(exc.detail) from exc
        result: dict[str, Any] = msgspec.to_builtins(view)
        return result

    return server


async def serve_mcp(settings: Settings, *, transport: Transport, host: str, port: int) -> None:
    """Open the runtime once for this process and serve MCP over `transport` until stopped."""
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown MCP transport {transport!r}; expected one of {TRANSPORTS}")
    async with open_runtime(settings) as runtime:
        if transport == "stdio":
            await build_server(runtime, stdio_api_key=os.environ.get(API_KEY_ENV)).run_stdio_async()
            return
        import uvicorn

        app = build_server(runtime).streamable_http_app(streamable_http_path=HTTP_PATH, host=host)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning")
        await uvicorn.Server(config).serve()


def run_mcp(settings: Settings, *, transport: str, host: str, port: int) -> None:
    """Blocking entry point for `fairshare mcp` and `python -m service.mcp_server`."""
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown MCP transport {transport!r}; expected one of {TRANSPORTS}")
    chosen: Transport = "stdio" if transport == "stdio" else "http"
    asyncio.run(serve_mcp(settings, transport=chosen, host=host, port=port))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.mcp_server", description="Serve Fairshare over MCP."
    )
    parser.add_argument("--transport", choices=TRANSPORTS, default="stdio")
    parser.add_argument("--host", help="HTTP address (default: FAIRSHARE_HOST)")
    parser.add_argument("--port", type=int, help="HTTP port (default: FAIRSHARE_PORT)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        run_mcp(
            settings,
            transport=args.transport,
            host=args.host or settings.host,
            port=args.port or settings.port,
        )
    except FairshareError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
