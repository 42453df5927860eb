"""Dropping a whole dataset from an index, and the count of what went: the figures a deletion
receipt signs (`contracts.RevocationClaims`)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

# FAISS and BM25 both list a generation's chunk ids in this file, one per vector or document.
IDS_FILE = "ids.json"


@dataclass(frozen=True, slots=True)
class Removed:
    """What dropping one dataset took out of an index: `items` (distinct chunk ids in FAISS's
    id maps, BM25 documents, Qdrant points) and the `files` and `bytes` deleted from disk."""

    items: int
    files: int = 0
    bytes: int = 0


def remove_tree(directory: Path) -> Removed:
    """Delete `directory` (a dataset's index files: every generation, and any staging a failed
    ingest left) after counting it. Raises if anything cannot be deleted: a receipt must never
    claim a removal that did not happen."""
    if not directory.exists():
        return Removed(0)
    files = [path for path in directory.rglob("*") if path.is_file()]
    ids: set[str] = set()
    size = 0
    for path in files:
        size += path.stat().st_size
        if path.name == IDS_FILE:
            ids.update(json.loads(path.read_text()))
    shutil.rmtree(directory)
    return Removed(items=len(ids), files=len(files), bytes=size)
