"""A throwaway Redis server for the rate-limit conformance runs.

Starts `redis-server` from PATH on a free loopback port, with a temporary working folder and no
persistence (no RDB snapshots, no append-only file), waits until it answers PING, and stops it
afterwards. CI installs the Debian package (`.ci/run`); without it the Redis half of the suite
fails with `RedisUnavailable`'s reason, never skips.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

STARTUP_SECONDS = 10


class RedisUnavailable(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server(port: int | None = None) -> Iterator[str]:
    """Yield the redis:// URL of a fresh, empty server on `port` (a free one if None)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailable(
            "redis-server is not on PATH: install it (Debian: apt-get install redis-server; "
            "`.ci/run` does so when run as root)"
        )
    port = port or free_port()
    root = Path(tempfile.mkdtemp(prefix="fairshare-redis-"))
    log = root / "redis.log"
    process = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(root),
            "--logfile",
            str(log),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_ping(port, process, log)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_ping(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        while True:
            if process.poll() is not None:
                raise RedisUnavailable(f"redis-server exited: {_tail(log)}")
            try:
                if client.ping():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RedisUnavailable(f"redis-server did not answer PING: {_tail(log)}")
            time.sleep(0.02)
    finally:
        client.close()


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-1000:]
    except OSError:
        return "(no log)"
