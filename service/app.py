"""The Litestar application: resources opened in the lifespan, routes in `service/routes/`."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.handlers import BaseRouteHandler
from litestar.openapi import OpenAPIConfig

from ledger.keys import Principal
from service.auth import authenticate
from service.observability import access_middleware, configure_logging, metrics
from service.problems import EXCEPTION_HANDLERS, ErrorAndAuthDocs
from service.ratelimit import enforce_rate_limit
from service.routes import admin, catalog, health, ledger, licences, owners, search
from service.runtime import Runtime, freeze_loaded_heap, open_runtime, size_model_threads
from service.settings import Settings, load_settings
from service.strict_json import StrictJsonRequest

MAX_BODY_BYTES = 1024 * 1024
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _runtime(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


async def _principal(request: Request[Any, Any, Any], runtime: Runtime) -> Principal:
    return await authenticate(request, runtime)


async def _key_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """The app's one guard (Litestar copies the route handler for every guard it runs, ~3% of
    the event loop's CPU per guard under load). A route that takes a key checks it before its
    parameters and body are read (guards run first; dependencies only after the body is
    decoded), so a missing or bad key is a 401 whatever else the request got wrong, and an
    anonymous caller learns nothing of the schema. Then the key spends one from its rate, so a
    refused request (429) is never searched or charged. Keyless routes and 401s spend nothing."""
    if "principal" in handler.parsed_fn_signature.parameters:
        runtime = _runtime(connection.app.state)
        principal = await authenticate(connection, runtime)
        await enforce_rate_limit(runtime.limiter, principal.key_id)


def die_with_parent() -> None:
    """Have the kernel kill this worker if `fairshare serve`'s parent process dies.

    uvicorn's supervisor stops its workers on SIGTERM or SIGINT, but a SIGKILLed (or crashed)
    parent cannot, and orphaned workers would go on serving, holding the port, with no one to
    stop them. SIGKILL keeps "the server crashed" meaning what it means with one process: what
    was not committed is not charged, and a restart can bind the port at once."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before the line above
        os.kill(os.getpid(), signal.SIGKILL)


def create_worker_app() -> Litestar:
    """The app of one `fairshare serve` worker process (`service.workers`).

    Settings come from the environment, which the parent process passed on unchanged; the
    worker's models get their share of the cores before they load."""
    settings = load_settings()
    configure_logging()
    size_model_threads(settings.model_thread_count)
    return create_app(settings)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Litestar:
    """Build the app. With `runtime` given (tests), the lifespan does not open another one."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if runtime is not None:
            yield  # owned by the caller, already in `state`
            return
        async with open_runtime(settings or load_settings()) as opened:
            app.state.runtime = opened
            freeze_loaded_heap()
            yield

    return Litestar(
        route_handlers=[
            search.search,
            catalog.list_datasets,
            catalog.get_chunk,
            catalog.list_revocations,
            owners.owner_statement,
            owners.owner_residency,
            ledger.receipt_keys,
            ledger.get_receipt,
            ledger.create_reversal,
            ledger.close,
            ledger.owner_payouts,
            ledger.my_balance,
            ledger.topup,
            ledger.credit_limit,
            ledger.territory,
            licences.get_licence,
            licences.put_licence,
            licences.put_licence_rsl,
            admin.add_owner,
            admin.list_owners,
            admin.add_dataset,
            admin.revoke_dataset,
            admin.create_key,
            health.healthz,
            health.readyz,
            metrics,
        ],
        middleware=[access_middleware],
        guards=[_key_guard],
        dependencies={
            "runtime": Provide(_runtime, sync_to_thread=False),
            "principal": Provide(_principal),
        },
        lifespan=[lifespan],
        state=State({"runtime": runtime} if runtime is not None else {}),
        exception_handlers=EXCEPTION_HANDLERS,
        plugins=[ErrorAndAuthDocs()],
        openapi_config=OpenAPIConfig(title="Fairshare", version="0.1.0", path="/schema"),
        request_max_body_size=MAX_BODY_BYTES,
        request_class=StrictJsonRequest,
    )
