"""Metrics (Prometheus text at /metrics) and one structured JSON log line per request.

Metrics live in this process's registry: with several `fairshare serve` workers, scrape each
(or run one per container). Labels are bounded: routes are path templates, never raw paths, and
datasets come from the catalog.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from litestar import Response, get
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from contracts import Hit

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Counter(
    "fairshare_http_requests_total",
    "HTTP requests by route and status",
    ["method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "fairshare_http_request_seconds", "HTTP request latency", ["route"], buckets=_LATENCY_BUCKETS
)
STAGE_SECONDS = Histogram(
    "fairshare_search_stage_seconds",
    "Search latency by stage (embed, retrieve, rerank, total)",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
)
HITS = Counter("fairshare_hits_total", "Passages delivered and charged", ["dataset"])
REVENUE = Counter(
    "fairshare_revenue_micros_total", "Gross revenue of delivered hits", ["dataset", "currency"]
)
LEDGER_BATCH = Histogram(
    "fairshare_ledger_batch_queries",
    "Queries booked per group commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
RERANK_PAIRS = Histogram(
    "fairshare_rerank_pairs",
    "Query-passage pairs scored per rerank call",
    buckets=(1, 5, 10, 20, 30, 50, 100),
)
MODEL_BATCH = Histogram(
    "fairshare_model_batch_size",
    "Model calls by stage and how many items shared each: queries (embed) or searches' heads "
    "(rerank); the count is the forward passes made",
    ["stage"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
CACHE_LOOKUPS = Counter(
    "fairshare_model_cache_lookups_total",
    "Query-embedding (embed) and cross-encoder score (rerank) cache lookups, by result",
    ["stage", "result"],
)
RATE_LIMITED = Counter(
    "fairshare_rate_limited_total", "Requests refused with 429 because their key is over its rate"
)
RATE_LIMITER_ERRORS = Counter(
    "fairshare_rate_limiter_errors_total",
    "Requests let through unchecked because the rate limiter's store (Redis) failed",
)

access_log = logging.getLogger("fairshare.access")
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own variable


@get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics() -> Response[bytes]:
    """This process's metrics, or every worker's summed when `fairshare serve` runs several."""
    if os.environ.get(MULTIPROCESS_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(content=generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(content=generate_latest(), media_type=CONTENT_TYPE_LATEST)


@contextmanager
def share_metrics_across_workers() -> Iterator[None]:
    """For the duration, worker processes started from here keep their metrics in files in one
    fresh directory (prometheus_client's multiprocess mode), so any worker's /metrics reports
    them all. The variable must be set before a worker imports prometheus_client."""
    with tempfile.TemporaryDirectory(prefix="fairshare-metrics-") as directory:
        os.environ[MULTIPROCESS_ENV] = directory
        try:
            yield
        finally:
            del os.environ[MULTIPROCESS_ENV]


def observe_search(timings: dict[str, float], hits: Sequence[Hit], reranked_pairs: int) -> None:
    for stage, ms in timings.items():
        STAGE_SECONDS.labels(stage).observe(ms / 1000)
    for hit in hits:
        HITS.labels(hit.dataset_id).inc()
        REVENUE.labels(hit.dataset_id, hit.currency).inc(hit.price_micros)
    if reranked_pairs:
        RERANK_PAIRS.observe(reranked_pairs)


class ModelMetrics:
    """The search pipeline's observer: model calls and cache lookups into Prometheus."""

    def model_call(self, stage: str, size: int) -> None:
        MODEL_BATCH.labels(stage).observe(size)

    def cache_lookups(self, stage: str, hits: int, misses: int) -> None:
        if hits:
            CACHE_LOOKUPS.labels(stage, "hit").inc(hits)
        if misses:
            CACHE_LOOKUPS.labels(stage, "miss").inc(misses)


def access_middleware(app: ASGIApp) -> ASGIApp:
    """Time every request, count it, and log it as one JSON line (with its query_id if any)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        method = str(scope.get("method", ""))
        try:
            await app(scope, receive, record_status)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("path_template") or "unmatched"
            REQUESTS.labels(method, route, str(status)).inc()
            REQUEST_SECONDS.labels(route).observe(elapsed)
            state: dict[str, Any] = scope.get("state") or {}
            access_log.info(
                json.dumps(
                    {
                        "method": method,
                        "path": scope["path"],
                        "route": route,
                        "status": status,
                        "ms": round(elapsed * 1000, 3),
                        "query_id": state.get("query_id"),
                        "pid": os.getpid(),  # which worker, when `fairshare serve` runs several
                    }
                )
            )

    return middleware


def configure_logging() -> None:
    """JSON lines on stdout for access logs; everything else keeps its default format."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_JsonFormatter())
    access_log.handlers = [handler]
    access_log.setLevel(logging.INFO)
    access_log.propagate = False


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = json.loads(record.getMessage())
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return json.dumps({"ts": f"{ts}.{int(record.msecs):03d}Z", **fields})
