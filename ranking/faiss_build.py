"""Which FAISS index a set of vectors gets, and the search-time settings a loaded index needs.

`FaissIndex.prepare` and `bench/faiss_scale.py` both build through `build_index`, so the figures
the bench prints are the figures the service gets. Vectors are L2-normalised float32, so inner
product is cosine; both index types store the full vectors, so returned scores are exact cosines
and only *which* neighbours come back can differ from brute force.

The constants below were chosen with `bench/faiss_scale.py` on clustered synthetic 384-d vectors
on the 2-core development machine; rerun it before changing them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import faiss
import numpy as np
from numpy.typing import NDArray

# Below this many vectors a dataset is searched exactly: recall 1.0, the build is a copy, and a
# single query costs p50 2.4-2.8 ms at 50k x 384 (1.1 ms at 25k, 8.6 ms at 100k, 20 ms at 250k,
# 64 ms at 1M; bench/faiss_scale.py, 2 shared cores, one thread per query), under the ~7 ms the
# query embedding itself takes (README). From 50k up, IVF scanning a fixed ~25k vectors is faster
# (p50 1.4-1.5 ms at 50k-1M, recall@10 0.992-0.999); below it, IVF would scan most of the data.
EXACT_THRESHOLD = 50_000

# IVFFlat over HNSW, measured at 1M clustered 384-d vectors (bench/faiss_scale.py): IVF reached
# recall@10 0.997 at nprobe=32 (p50 0.6 ms) after a 95-121 s build; HNSW (M=32,
# efConstruction=80) took 353-415 s to build and reached only 0.93 at efSearch=256 (p50 0.7 ms).
# IVF also stores nothing beyond the vectors and their ids (1.48 GB file vs HNSW's 1.72 GB at 1M).
# HNSW did better at 100k-120k (0.984-0.997 at efSearch=64); IVF meets 0.98 there too by probing
# more lists (below).
#
# nlist = 4·√n, the low end of the FAISS wiki's "Guidelines to choose an index" (4·√n to 16·√n):
# fewer, larger lists keep a probe's scan efficient and training cheap.
IVF_LISTS_PER_SQRT_N = 4
# k-means trains on a sample: FAISS warns below 39 points per centroid, and training on all 1M
# points (256 per list by default, 25 iterations) would take ~40 min on 2 cores. 40 per list and
# 10 iterations took 95-121 s (with the add) at 1M and still gave the recall above.
IVF_TRAIN_PER_LIST = 40
IVF_TRAIN_ITERATIONS = 10
# Each query scans about this many vectors whatever the dataset's size (nprobe = this / mean list
# size). Recall at a fixed share probed rises with n (lists get denser): recall@10 0.98 needed
# ~15-20% of lists at 100k-120k (two query draws: 0.985 and 0.969 at ~10%), 1.6% at 250k and 0.4%
# at 1M. 25,000 vectors probes 25% at 100k and 100 of 4,000 lists at 1M, ~1.5 ms p50 per query.
IVF_SCAN_VECTORS = 25_000


def build_index(
    vectors: NDArray[np.float32], *, exact_threshold: int = EXACT_THRESHOLD
) -> faiss.Index:
    """Build the index these vectors get by their count: exact below `exact_threshold`, else IVF.

    The IVF build (k-means and assignment) uses FAISS's OpenMP thread count, all cores unless
    OMP_NUM_THREADS says otherwise. The returned index is ready to search.
    """
    n, dim = vectors.shape
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index: faiss.Index
    if n < exact_threshold or n == 0:
        index = faiss.IndexFlatIP(dim)
    else:
        # Capped so every list gets its training points when a test lowers the threshold.
        nlist = max(1, min(int(IVF_LISTS_PER_SQRT_N * np.sqrt(n)), n // IVF_TRAIN_PER_LIST))
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.niter = IVF_TRAIN_ITERATIONS
        # Plain, not spherical, k-means: at 50k-250k it gave up to 1.3 points more recall@10.
        rows = np.random.default_rng(0).choice(n, min(n, IVF_TRAIN_PER_LIST * nlist), replace=False)
        ivf.train(vectors[np.sort(rows)])
        index = ivf
    if n:
        index.add(vectors)
    return configure_for_search(index)


def ivf_nprobe(ntotal: int, nlist: int) -> int:
    """Lists to probe so a query scans about `IVF_SCAN_VECTORS` vectors."""
    return max(1, min(nlist, -(-IVF_SCAN_VECTORS * nlist // max(ntotal, 1))))


def configure_for_search(index: faiss.Index) -> faiss.Index:
    """Apply this code's search-time parameters to a built or freshly read index; returns it.

    FAISS 1.15 does persist `nprobe` in the file, but a file written before a change to the
    constants here would carry the old value; the code, not the file, decides how a search runs.
    """
    if isinstance(index, faiss.IndexIVF):
        index.nprobe = ivf_nprobe(index.ntotal, index.nlist)
    return index


def describe(index: faiss.Index) -> str:
    """Index type and parameters, for logs and bench output."""
    if isinstance(index, faiss.IndexIVFFlat):
        return f"IVFFlat(nlist={index.nlist}, nprobe={index.nprobe})"
    if isinstance(index, faiss.IndexFlatIP):
        return "FlatIP(exact)"
    return type(index).__name__


@contextmanager
def one_thread_per_query() -> Iterator[None]:
    """Run the FAISS calls in this block on one OpenMP thread, then restore the previous count.

    The OpenMP thread count is per calling thread (new threads start from the process default), so
    this does not touch builds running elsewhere. The API searches one query per request on the
    pipeline's threads; letting each spawn an OpenMP team oversubscribes the cores. Measured on the
    2-core machine while other jobs ran: exact search over 50k vectors p50 24-28 ms with 2 threads,
    2.4-6 ms with 1.
    """
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
