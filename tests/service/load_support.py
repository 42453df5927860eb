"""A live `fairshare serve` process and a planned load of paid searches against it.

Used by the ledger load tests. The server is a real subprocess on a real port that can be killed
with SIGKILL and restarted on the same port and data. The load is planned up front: every request
has its own Idempotency-Key, and a share of them are retries that reuse an earlier request's key
and exact body bytes, some queued right behind their original (so both are in flight at once),
some later. Clients are separate `httpx.AsyncClient`s, each with its own connection.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec

from ledger.db import make_engine
from ledger.keys import KeyStore

STARTUP_SECONDS = 120
# Between attempts of a request that lost its connection (server down): a pause, not a check.
RETRY_PAUSE_SECONDS = 0.05
REQUEST_TIMEOUT_SECONDS = 60
# A client that gives up this soon has sent its request but reads no answer: the server goes on
# to search and commit, and the response goes nowhere.
ABANDON_TIMEOUT = httpx.Timeout(REQUEST_TIMEOUT_SECONDS, read=0.001)
ABANDONED_WAIT_SECONDS = 10

# Short queries in the demo catalog's three domains: embedding and BM25 cost little per query,
# so the load spends its time where the test looks (requests, pricing, the ledger).
VOCABULARY = (
    "pneumonia",
    "antibiotics",
    "sepsis",
    "fluids",
    "dosing",
    "anticoagulation",
    "asthma",
    "diabetes",
    "insulin",
    "paediatric",
    "fever",
    "contract",
    "repudiation",
    "negligence",
    "duty",
    "care",
    "property",
    "possession",
    "copyright",
    "defamation",
    "fiduciary",
    "arbitration",
    "interrogation",
    "jeopardy",
    "semiconductor",
    "earnings",
    "yield",
    "inflation",
    "copper",
    "stablecoin",
    "recall",
    "guidance",
    "rates",
    "bond",
    "mine",
)


class ServerFailed(Exception):
    """The server process exited or never became ready; the message carries its log's tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """`fairshare serve` on one port; `kill` is SIGKILL, `start` again reuses port and data.

    Output goes to a log file, not a pipe: a pipe nobody reads fills up with access-log lines
    and then blocks the server.
    """

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("FAIRSHARE_")}
        self._env = {
            **inherited,
            **env,
            "FAIRSHARE_HOST": "127.0.0.1",
            "FAIRSHARE_PORT": str(self.port),
        }
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        """Start the process and wait until /readyz answers 200."""
        fairshare = Path(sys.executable).parent / "fairshare"
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [str(fairshare), "serve"], env=self._env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        async with httpx.AsyncClient(base_url=self.base_url, timeout=1) as http:
            while True:
                if self._process.poll() is not None:
                    raise ServerFailed(
                        f"fairshare serve exited with {self._process.returncode}:\n{self.log_tail()}"
                    )
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise ServerFailed(f"fairshare serve did not become ready:\n{self.log_tail()}")
                await asyncio.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs; in-flight requests and uncommitted batches are lost."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM and wait (uvicorn finishes open requests, the lifespan commits the queue)."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self._log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


async def new_agent(database_url: str, customer: str) -> tuple[str, str]:
    """(customer id, plaintext key) of a new agent key, written straight to the database."""
    engine = make_engine(database_url)
    try:
        principal, key = await KeyStore(engine).create_key(customer=customer, role="agent")
    finally:
        await engine.dispose()
    return principal.customer_id, key


@dataclass(frozen=True, slots=True)
class Planned:
    key: str
    body: bytes
    retry_of: int | None = None  # index in the plan of the request this one repeats
    # The client gives up on its first attempt before the answer and sends it again later.
    abandon_first: bool = False


def plan_load(
    total: int,
    *,
    retry_share: float,
    seed: int,
    key_prefix: str,
    abandon_share: float = 0.0,
) -> list[Planned]:
    """`total` requests; `retry_share` of them repeat an earlier request's key and body.

    Half the retries are queued right behind their original (another client picks them up while
    the original is still being served); the others come 20..400 requests later. An
    `abandon_share` of the originals are given up on by their client at the first attempt.
    """
    rng = random.Random(seed)
    retries = round(total * retry_share)
    originals = total - retries
    bodies = [
        msgspec.json.encode(
            {
                "query": " ".join(rng.sample(VOCABULARY, rng.randint(1, 2))),
                "top_k": rng.randint(1, 5),
                "rerank": False,
            }
        )
        for _ in range(originals)
    ]
    repeated = rng.sample(range(originals), retries)
    abandoned = set(rng.sample(range(originals), round(originals * abandon_share)))
    # (place in the sequence, 0 for an original or 1 for a retry, which original it is)
    order = [(i, 0, i) for i in range(originals)]
    for n, original in enumerate(repeated):
        place = original if n % 2 == 0 else original + rng.randint(20, 400)
        order.append((place, 1, original))
    order.sort(key=lambda item: item[:2])
    plan: list[Planned] = []
    index_of: dict[int, int] = {}  # original -> its index in the plan
    for _, is_retry, original in order:
        if is_retry:
            first = plan[index_of[original]]
            plan.append(Planned(first.key, first.body, retry_of=index_of[original]))
        else:
            index_of[original] = len(plan)
            key = f"{key_prefix}-{original}"
            plan.append(Planned(key, bodies[original], abandon_first=original in abandoned))
    return plan


@dataclass(slots=True)
class Outcome:
    status: int = 0
    body: bytes = b""
    sent: float = 0.0  # monotonic time the first attempt was sent
    answered: float = 0.0  # monotonic time the answer arrived
    lost_connections: int = 0  # attempts that failed with a transport error
    # Abandoned at the first attempt, and the server had committed that attempt before the
    # client asked again: the answer it then got is a replay of a response it never received.
    committed_unanswered: bool = False


@dataclass(slots=True)
class Progress:
    """How many requests have been answered; lets a test act after the n-th answer."""

    answered: int = 0
    _waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)

    def tick(self) -> None:
        self.answered += 1
        for n, future in self._waiters:
            if self.answered >= n and not future.done():
                future.set_result(None)

    async def reached(self, n: int) -> None:
        if self.answered >= n:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((n, future))
        await future


# Whether the ledger holds a query for this Idempotency-Key (asked of the database directly).
IsCommitted = Callable[[str], Awaitable[bool]]


async def run_load(
    base_url: str,
    api_key: str,
    plan: list[Planned],
    *,
    clients: int,
    retry_lost_connections: bool = False,
    committed: IsCommitted | None = None,
    progress: Progress | None = None,
    deadline_seconds: float = 600,
) -> list[Outcome]:
    """Send every planned request from `clients` concurrent clients, in plan order.

    With `retry_lost_connections`, a request that fails with a transport error (server killed
    mid-request, or down) is sent again with the same key and body until it gets an answer.
    A request planned with `abandon_first` times out at once on its first attempt; the client
    then waits (up to ABANDONED_WAIT_SECONDS) until `committed` says the server booked it, and
    asks again.
    """
    outcomes = [Outcome() for _ in plan]
    next_index = itertools.count()  # shared: each client takes the next unsent request
    deadline = time.monotonic() + deadline_seconds
    track = progress or Progress()

    async def send(http: httpx.AsyncClient, planned: Planned, outcome: Outcome) -> None:
        headers = {
            "Authorization": f"Bearer {api_key}",
            "Idempotency-Key": planned.key,
            "Content-Type": "application/json",
        }
        outcome.sent = time.monotonic()
        abandon = planned.abandon_first
        while True:
            try:
                response = await http.post(
                    "/v1/search",
                    content=planned.body,
                    headers=headers,
                    timeout=ABANDON_TIMEOUT if abandon else httpx.USE_CLIENT_DEFAULT,
                )
                break
            except httpx.TransportError:
                if abandon:
                    abandon = False
                    if committed is not None:
                        outcome.committed_unanswered = await _poll(
                            lambda: committed(planned.key), ABANDONED_WAIT_SECONDS
                        )
                    continue
                if not retry_lost_connections or time.monotonic() > deadline:
                    raise
                outcome.lost_connections += 1
                await asyncio.sleep(RETRY_PAUSE_SECONDS)
        outcome.answered = time.monotonic()
        outcome.status, outcome.body = response.status_code, response.content
        track.tick()

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_SECONDS) as http:
            while (i := next(next_index)) < len(plan):
                await send(http, plan[i], outcomes[i])

    async with asyncio.timeout(deadline_seconds), asyncio.TaskGroup() as group:
        for _ in range(clients):
            group.create_task(client())
    return outcomes


async def _poll(condition: Callable[[], Awaitable[bool]], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not await condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def overlapping_retries(plan: list[Planned], outcomes: list[Outcome]) -> int:
    """How many retries were sent before their original's answer arrived."""
    return sum(
        1
        for p, o in zip(plan, outcomes, strict=True)
        if p.retry_of is not None and o.sent < outcomes[p.retry_of].answered
    )
