"""Where a live server's CPU and latency go during one load run (used by bench/serve.py).

Two sources, each read before and after the run:

- `/proc`: CPU time of every thread of the server's process tree, the event-loop threads (each
  process's first thread) apart, and how busy the whole machine was. Per-thread figures come
  from `/proc/<pid>/task/<tid>/stat`. `top -H -p <pid>` is no substitute: it shows the process's
  total on the first thread's row, which once passed here for "the event loop at 100%".
- `/metrics`: the search stage histograms' sums, so the mean latency of a search splits into
  the query embedding (batching wait included), retrieval (thread queue included), rerank, the
  rest of the pipeline, and what lies outside it (key check, body parsing, the ledger's group
  commit, the response). Only with one worker: each scrape answers from one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Snapshot:
    threads_s: dict[int, float]  # tid -> CPU seconds (user + system)
    loop_tids: frozenset[int]
    machine: tuple[float, float]  # (idle, total) jiffies of /proc/stat's cpu line
    sums: dict[str, float]  # histogram sums in seconds: "embed", ..., "request"


def _process_tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        todo.extend(int(c) for c in children)
    return found


def _thread_cpu(pids: list[int]) -> dict[int, float]:
    cpu: dict[int, float] = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # the thread ended meanwhile
                continue
            cpu[int(task.name)] = (int(fields[11]) + int(fields[12])) * TICK_S
    return cpu


def _machine() -> tuple[float, float]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)  # idle + iowait, all


def stage_sums(metrics: str) -> dict[str, float]:
    """Seconds summed over searches, by stage ("embed", "retrieve", "rerank", "total") and for
    whole `/v1/search` requests ("request"), from Prometheus text."""
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == "fairshare_search_stage_seconds_sum":
                sums[sample.labels["stage"]] = sample.value
            elif (
                sample.name == "fairshare_http_request_seconds_sum"
                and sample.labels.get("route") == "/v1/search"
            ):
                sums["request"] = sample.value
    return sums


def snapshot(pid: int, url: str | None) -> Snapshot:
    """The server's threads' CPU and the machine's now; its stage sums too if `url` is given."""
    pids = _process_tree(pid)
    sums = stage_sums(httpx.get(url + "/metrics", timeout=10).text) if url else {}
    return Snapshot(_thread_cpu(pids), frozenset(pids), _machine(), sums)


def profile(before: Snapshot, after: Snapshot, requests: int, seconds: float) -> dict[str, Any]:
    """Per-search CPU (ms) of the server, of its event loops and of its busiest other thread;
    how busy the event loops and the machine were; and, from the metrics, the mean latency (ms)
    of a search split by stage."""
    delta = {t: s - before.threads_s.get(t, 0.0) for t, s in after.threads_s.items()}
    loops = [s for t, s in delta.items() if t in after.loop_tids]
    loop = sum(loops)
    others = sorted((s for t, s in delta.items() if t not in after.loop_tids), reverse=True)
    idle = after.machine[0] - before.machine[0]
    total = after.machine[1] - before.machine[1]
    per_search = 1000 / requests
    result: dict[str, Any] = {
        "server_cpu_ms": round(sum(delta.values()) * per_search, 2),
        "event_loop_cpu_ms": round(loop * per_search, 2),
        # The busiest first thread's share of a core: with several workers the tree also holds
        # the supervisor (and multiprocessing's helper), whose first threads idle.
        "event_loop_busy": round(max(loops, default=0.0) / seconds, 2),
        "busiest_other_thread_cpu_ms": round(others[0] * per_search, 2) if others else 0.0,
        "machine_busy": round(1 - idle / total, 2) if total else None,
        "latency_ms": None,
    }
    if after.sums and before.sums:
        mean = {k: (after.sums[k] - before.sums.get(k, 0.0)) * per_search for k in after.sums}
        stages = ("embed", "retrieve", "rerank")
        result["latency_ms"] = {
            "request": round(mean["request"], 2),
            **{stage: round(mean[stage], 2) for stage in stages},
            "rest_of_pipeline": round(mean["total"] - sum(mean[s] for s in stages), 2),
            "outside_pipeline": round(mean["request"] - mean["total"], 2),
        }
    return result


def lines(label: str, p: dict[str, Any]) -> list[str]:
    """A few Markdown lines for the table's notes."""
    out = [
        f"- {label}: server CPU {p['server_cpu_ms']:.2f} ms per search (event loops "
        f"{p['event_loop_cpu_ms']:.2f} ms, the busiest at {p['event_loop_busy']:.0%} of a core; "
        f"busiest other thread {p['busiest_other_thread_cpu_ms']:.2f} ms); machine "
        f"{p['machine_busy']:.0%} "
        "busy."
    ]
    latency = p["latency_ms"]
    if latency is not None:
        out.append(
            f"  Mean latency {latency['request']:.1f} ms: embedding (with batching wait) "
            f"{latency['embed']:.1f}, retrieval (with thread queue) {latency['retrieve']:.1f}, "
            f"rerank {latency['rerank']:.1f}, rest of the pipeline "
            f"{latency['rest_of_pipeline']:.1f}, outside it (key check, parsing, ledger commit, "
            f"response) {latency['outside_pipeline']:.1f}."
        )
    return out
