"""Qdrant index: the system of record for vectors and their payload, local on disk or a server."""

from __future__ import annotations

import sqlite3
import warnings
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from qdrant_client import QdrantClient, models

from ranking.removal import Removed

COLLECTION = "chunks"
UPSERT_BATCH = 512


def open_qdrant(*, url: str | None, path: Path) -> QdrantClient:
    """A client for the server at `url`, or for local mode under `path`.

    Local mode holds a file lock: one process at a time may open it.
    """
    if url:
        return QdrantClient(url=url)
    path.mkdir(parents=True, exist_ok=True)
    return QdrantClient(path=str(path))


class QdrantIndex:
    """All datasets in one collection, partitioned by a `dataset_id` payload filter.

    Qdrant point ids must be UUIDs or integers; chunk ids are UUID hex strings, so they map 1:1.
    """

    name = "qdrant"

    def __init__(
        self,
        client: QdrantClient,
        dim: int,
        collection: str = COLLECTION,
        *,
        local_path: Path | None = None,
    ) -> None:
        """`local_path`: where `open_qdrant` put a local-mode client's storage (None for a
        server), so the collection's file can be switched to WAL (`journal_in_wal`)."""
        self.client = client
        self.dim = dim
        self.collection = collection
        if not client.collection_exists(collection):
            client.create_collection(
                collection,
                vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
            )
            with warnings.catch_warnings():
                # Local mode ignores payload indexes (and says so); a server uses it to filter.
                warnings.simplefilter("ignore", UserWarning)
                client.create_payload_index(
                    collection, "dataset_id", models.PayloadSchemaType.KEYWORD
                )
        if local_path is not None:
            journal_in_wal(local_storage_file(local_path, collection))

    def prepare(
        self,
        dataset_id: str,
        *,
        base_generation: int,
        generation: int,
        add_ids: Sequence[str],
        add_vectors: NDArray[np.float32],
        remove_ids: Sequence[str],
    ) -> None:
        # New points are invisible until the catalog lists their chunks; upserting early is safe.
        for start in range(0, len(add_ids), UPSERT_BATCH):
            ids = add_ids[start : start + UPSERT_BATCH]
            vectors = add_vectors[start : start + UPSERT_BATCH]
            self.client.upsert(
                self.collection,
                points=models.Batch(
                    ids=list(ids),
                    vectors=vectors.tolist(),
                    payloads=[{"dataset_id": dataset_id}] * len(ids),
                ),
                wait=True,
            )

    def finalize(self, dataset_id: str, *, generation: int, remove_ids: Sequence[str]) -> None:
        for start in range(0, len(remove_ids), UPSERT_BATCH):
            self.client.delete(
                self.collection,
                points_selector=models.PointIdsList(
                    points=list(remove_ids[start : start + UPSERT_BATCH])
                ),
                wait=True,
            )

    def abort(self, dataset_id: str, *, generation: int, add_ids: Sequence[str]) -> None:
        # Chunk ids hash the document content, so staged ids are never ids the committed
        # generation serves; removing them cannot take anything visible away.
        self.finalize(dataset_id, generation=generation, remove_ids=add_ids)

    def drop(self, dataset_id: str) -> Removed:
        """Delete every point of the dataset; counts them (Qdrant holds no files of ours)."""
        return Removed(drop_points(self.client, self.collection, dataset_id))

    def search(
        self, query: NDArray[np.float32], k: int, generations: Mapping[str, int]
    ) -> list[tuple[str, float]]:
        if not generations:
            return []
        response = self.client.query_points(
            self.collection,
            query=query.astype(np.float32).tolist(),
            query_filter=_datasets_filter(sorted(generations)),
            limit=k,
        )
        # Qdrant returns UUIDs in dashed form; chunk ids are the undashed hex.
        pairs = [(str(p.id).replace("-", ""), float(p.score)) for p in response.points]
        pairs.sort(key=lambda pair: (-pair[1], pair[0]))
        return pairs

    def chunk_ids(self, dataset_id: str, generation: int) -> set[str]:
        found: set[str] = set()
        offset = None
        while True:
            points, offset = self.client.scroll(
                self.collection,
                scroll_filter=_datasets_filter([dataset_id]),
                limit=1024,
                offset=offset,
                with_payload=False,
                with_vectors=False,
            )
            found.update(str(p.id).replace("-", "") for p in points)
            if offset is None:
                return found

    def close(self) -> None:
        self.client.close()


def local_storage_file(path: Path, collection: str) -> Path:
    """The SQLite file in which qdrant-client's local mode under `path` keeps `collection`."""
    return path / "collection" / collection / "storage.sqlite"


def journal_in_wal(storage: Path) -> None:
    """Switch a local-mode collection's SQLite file to write-ahead logging; the mode is stored
    in the file, so the client's open connection and every later one use it.

    Local mode commits once per point. With SQLite's default rollback journal each commit
    creates, syncs and deletes a journal file: ingest's upsert of 2,300 SciFact chunks took
    1.7 s, against 0.55 s in WAL (README, Performance). `synchronous` stays FULL, so each point
    is as durable as before, on disk before the catalog commit that makes it visible.
    """
    if not storage.is_file():
        return  # another qdrant-client layout: slower, not wrong (tests/ranking/test_vectors.py)
    with closing(sqlite3.connect(storage)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


def _datasets_filter(dataset_ids: Sequence[str]) -> models.Filter:
    return models.Filter(
        must=[models.FieldCondition(key="dataset_id", match=models.MatchAny(any=list(dataset_ids)))]
    )


def count_points(client: QdrantClient, collection: str, dataset_id: str) -> int:
    """Points of one dataset in `collection` (0 when the collection does not exist); creates
    nothing, so a residency report leaves no trace in a store it only reads."""
    if not client.collection_exists(collection):
        return 0
    found = client.count(collection, count_filter=_datasets_filter([dataset_id]), exact=True)
    return int(found.count)


def drop_points(client: QdrantClient, collection: str, dataset_id: str) -> int:
    """Delete every point of one dataset from `collection` (created by nothing here); return
    how many went. Raises if any remain: a receipt must never claim what did not happen."""
    before = count_points(client, collection, dataset_id)
    if before:
        client.delete(
            collection,
            points_selector=models.FilterSelector(filter=_datasets_filter([dataset_id])),
            wait=True,
        )
    left = count_points(client, collection, dataset_id)
    if left:
        raise RuntimeError(f"{left} points of dataset {dataset_id} remain in {collection}")
    return before
