"""`fairshare serve` as several worker processes on one port.

Each worker is a fresh (spawned) process that builds the app from the environment and listens
on its own SO_REUSEPORT socket bound to the same address, so the kernel spreads incoming
connections over the workers. One listening socket shared by all workers (uvicorn's `workers=`)
does not: on each wakeup an asyncio server accepts every pending connection, so one worker takes
most of a burst while the others idle (measured: 28 of 28 concurrent searches on one of two).

The parent only supervises: it passes SIGTERM and SIGINT on as SIGTERM (uvicorn drains in-flight
requests on it), restarts a worker that dies while serving, and stops everything when one dies
within its first minute, since a start-up failure would only repeat. Workers die with the parent
(`service.app.die_with_parent`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from contracts import Unavailable

log = logging.getLogger("fairshare.workers")
START_GRACE_S = 60.0
POLL_S = 0.5


def serve_workers(count: int, host: str, port: int, options: dict[str, Any]) -> int:
    """Run `count` workers until SIGTERM or SIGINT; returns the command's exit status."""
    _check_port_free(host, port)
    context = multiprocessing.get_context("spawn")
    workers: list[tuple[BaseProcess, float]] = []
    stopping = False
    status = 0

    def start() -> tuple[BaseProcess, float]:
        process = context.Process(target=_worker, args=(host, port, options))
        process.start()
        return process, time.monotonic()

    def stop(_signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for process, _ in workers:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        workers.extend(start() for _ in range(count))
        while not stopping:
            for n, (process, started) in enumerate(workers):
                if process.is_alive() or stopping:
                    continue
                if time.monotonic() - started < START_GRACE_S:
                    log.error("worker %s exited (%s) while starting", process.pid, process.exitcode)
                    status = 1
                    stop()
                    break
                log.warning(
                    "worker %s exited (%s); starting another", process.pid, process.exitcode
                )
                workers[n] = start()
            time.sleep(POLL_S)
        for process, _ in workers:
            process.join()
        return status
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _check_port_free(host: str, port: int) -> None:
    """Refuse a port something else listens on. Workers bind with SO_REUSEPORT, which would let
    them silently share the port with another `fairshare serve` (perhaps over other data)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise Unavailable(f"cannot serve on {host}:{port}: {exc.strerror}") from exc


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _worker(host: str, port: int, options: dict[str, Any]) -> None:
    import uvicorn

    from service.app import die_with_parent

    die_with_parent()
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    config = uvicorn.Config("service.app:create_worker_app", factory=True, **options)
    uvicorn.Server(config).run(sockets=[sock])
