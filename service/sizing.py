"""How many worker processes `fairshare serve` runs, and how many threads each gives its models.

The models are the only heavy work (issue 6), and ONNX Runtime and torch each parallelise one
call over their intra-op threads. Workers beyond one buy a second event loop, so the Python
around the models (HTTP, SQL, fusion, the ledger write) runs on more than one core; threads per
worker buy faster single calls. `auto` splits the cores between the two as measured in the
README (Measured, Serving under load) and `WORKERS_PER_CORE` below.
"""

from __future__ import annotations

import os

from contracts import InvalidInput

AUTO = "auto"
# One worker per 4 cores. On the 2-core machine (bench/serve.py, README) 2 workers x 1 model
# thread served 148 searches/s at 16 clients without rerank against 1 x 2's 134-150, and a lone
# rerank took twice as long (1,202 vs 643 ms p50: each call had half the threads); 2 x 2 kept
# the lone rerank fast but 16 reranking clients got 1.04 searches/s against 1.28. Where one
# process cannot use every core, a worker per 4 cores keeps each model call 4 threads wide; that
# ratio is a judgement, not yet measured on a larger machine.
WORKERS_PER_CORE = 0.25


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    return max(1, len(os.sched_getaffinity(0)))


def worker_count(setting: str, cores: int | None = None) -> int:
    """FAIRSHARE_WORKERS: a positive integer, or `auto` (one per 4 cores, at least one)."""
    if setting.strip().lower() == AUTO:
        return max(1, int((cores or available_cores()) * WORKERS_PER_CORE))
    return _positive("FAIRSHARE_WORKERS", setting)


def model_threads(setting: str, workers: int, cores: int | None = None) -> int:
    """FAIRSHARE_MODEL_THREADS: intra-op threads per model call, a positive integer, or `auto`
    (the cores shared out among the workers, so that together they do not oversubscribe)."""
    if setting.strip().lower() == AUTO:
        return max(1, (cores or available_cores()) // max(1, workers))
    return _positive("FAIRSHARE_MODEL_THREADS", setting)


def _positive(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise InvalidInput(f"{name} must be a positive integer or 'auto', got {value!r}")
    return number
