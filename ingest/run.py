"""Ingest one licensed source into one dataset: read, chunk, embed, stage indexes, commit.

Visibility is decided by one SQL transaction (`commit_ingest`), which bumps the dataset's
generation. Index files for the new generation are written before it and garbage-collected after,
so search sees either the whole old dataset or the whole new one, never half a document.

Bad records: every one is reported with its line (or file) and reason. By default the good
records still go in, because one typo should not block a 50,000-document licence; `strict=True`
writes nothing when any record is bad. With errors present, `sync` deletes nothing: a document
whose line failed to parse is not "gone from the source".
"""

from __future__ import annotations

import fcntl
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import msgspec
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from contracts import (
    Chunk,
    ChunkText,
    ConflictError,
    Dataset,
    Document,
    ForbiddenError,
    InvalidInput,
    Licence,
)
from contracts.revocation import revoked_error
from ingest.chunking import chunks_at, content_hash, indexed_text, window_spans
from ingest.readers import Record, RecordError, read_source
from ranking.embedder import Embedder
from ranking.language import UNDETERMINED, detect_languages, normalise_language, settle_languages
from ranking.lexical import BM25Index, LexicalDoc
from ranking.vectors import VectorIndex

# Chunk texts per embedder call. The embedder sorts each call by length before cutting its model
# batches, so a larger call pads less: on 1000 SciFact documents (2194 chunks) the model ran
# 1.242x the real tokens with calls of 256, 1.205x with 1024, 1.202x with all in one call.
EMBED_STEP = 1024


class CatalogWriter(Protocol):
    """What ingest needs of the SQL catalog (implemented by `ledger.catalog.CatalogStore`)."""

    async def generations(self) -> dict[str, int]: ...
    async def get_dataset(self, dataset_id: str) -> Dataset: ...
    async def document_hashes(self, dataset_id: str) -> dict[str, str]: ...
    async def chunk_texts(self, dataset_id: str) -> list[ChunkText]: ...
    async def commit_ingest(
        self,
        *,
        dataset_id: str,
        expected_generation: int,
        upserts: Sequence[tuple[Document, str, Sequence[Chunk]]],
        deletes: Sequence[str],
    ) -> int: ...


@dataclass
class IngestReport:
    dataset_id: str
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks_written: int = 0
    generation: int = 0
    errors: list[RecordError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.dataset_id}: {self.added} added, {self.changed} changed, "
            f"{self.unchanged} unchanged, {self.removed} removed, {self.chunks_written} chunks "
            f"written, {len(self.errors)} bad records (generation {self.generation})"
        )


@contextmanager
def dataset_lock(lock_dir: Path, dataset_id: str, *, wait: bool = True) -> Iterator[None]:
    """One ingest (or revocation) per dataset at a time on this machine: two would race for the
    same generation directory. The SQL generation check still catches writers on other machines.
    With `wait=False`, a lock held elsewhere is a ConflictError instead of a wait."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    with (lock_dir / f"{dataset_id}.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConflictError(
                f"dataset {dataset_id} is being ingested or revoked by another process on this "
                "machine; retry when it has finished",
                dataset_id=dataset_id,
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


async def ingest_source(
    source: Path,
    *,
    dataset_id: str,
    catalog: CatalogWriter,
    embedder: Embedder,
    vector_indexes: Sequence[VectorIndex],
    lexical: BM25Index,
    lock_dir: Path,
    region: str | None = None,
    sync: bool = False,
    strict: bool = False,
    progress: bool = True,
) -> IngestReport:
    """Ingest `source` into `dataset_id`. With `region` (the deployment's), a dataset whose
    licence does not allow processing there is refused before anything is read or written."""
    if not source.exists():
        raise InvalidInput(f"source {str(source)!r} does not exist")
    report = IngestReport(dataset_id)
    records: dict[str, Record] = {}
    for item in read_source(source):
        if isinstance(item, RecordError):
            report.errors.append(item)
        elif item.document.id in records:
            first = records[item.document.id].location
            report.errors.append(
                RecordError(item.location, f"duplicate id {item.document.id!r} (first at {first})")
            )
        else:
            records[item.document.id] = item
    if strict and report.errors:
        report.notes.append("strict mode: nothing written because of bad records")
        return report

    with dataset_lock(lock_dir, dataset_id):
        generations = await catalog.generations()
        if dataset_id not in generations:
            raise InvalidInput(
                f"unknown dataset {dataset_id!r}: add it with `fairshare datasets add`"
            )
        dataset = await catalog.get_dataset(dataset_id)
        if dataset.revoked_at is not None:
            raise revoked_error(dataset_id, dataset.revoked_at)
        if region is not None:
            refuse_outside_region(dataset.licence, region)
        base_generation = generations[dataset_id]
        existing = await catalog.document_hashes(dataset_id)

        upserts: list[tuple[Document, str]] = []
        for record in records.values():
            digest = content_hash(record.document)
            previous = existing.get(record.document.id)
            if previous == digest:
                report.unchanged += 1
                continue
            upserts.append((record.document, digest))
            if previous is None:
                report.added += 1
            else:
                report.changed += 1
        deletes: list[str] = []
        if sync:
            if report.errors:
                report.notes.append("--sync skipped deletions because some records were bad")
            else:
                deletes = sorted(set(existing) - set(records))
                report.removed = len(deletes)
        report.generation = base_generation
        if not upserts and not deletes:
            return report

        # Embedding on this thread (not a worker) so Ctrl-C stops it between two model batches.
        chunked, vectors = _chunk_and_embed(dataset_id, upserts, embedder, progress)
        new_chunks = [(document, chunk) for document, _, chunks in chunked for chunk in chunks]
        add_ids = [chunk.id for _, chunk in new_chunks]

        replaced = {document.id for document, _ in upserts} | set(deletes)
        old = await catalog.chunk_texts(dataset_id)
        remove_ids = [c.chunk_id for c in old if c.document_id in replaced]
        lexical_docs = [
            LexicalDoc(c.chunk_id, c.title, c.text, c.language)
            for c in old
            if c.document_id not in replaced
        ] + [LexicalDoc(c.id, d.title, c.text, d.language or UNDETERMINED) for d, c in new_chunks]
        generation = base_generation + 1
        try:
            # One after another on this thread, not in parallel: Qdrant local mode's SQLite
            # connection refuses other threads where SQLite is built multi-thread (macOS).
            for index in vector_indexes:
                index.prepare(
                    dataset_id,
                    base_generation=base_generation,
                    generation=generation,
                    add_ids=add_ids,
                    add_vectors=vectors,
                    remove_ids=remove_ids,
                )
            lexical.build(dataset_id, generation, lexical_docs)
            report.generation = await catalog.commit_ingest(
                dataset_id=dataset_id,
                expected_generation=base_generation,
                upserts=chunked,
                deletes=deletes,
            )
        except BaseException:
            await _abort(catalog, dataset_id, generation, add_ids, vector_indexes, lexical)
            raise
        for index in vector_indexes:
            index.finalize(dataset_id, generation=generation, remove_ids=remove_ids)
        lexical.finalize(dataset_id, generation=generation)
        report.chunks_written = len(add_ids)
        return report


def refuse_outside_region(licence: Licence, region: str) -> None:
    if not licence.processes_in(region):
        allowed = ", ".join(licence.processing_regions or [])
        raise ForbiddenError(
            f"licence {licence.id} allows processing only in region(s) {allowed}, and this "
            f"deployment is in region {region}: nothing was written. Ingest from a deployment "
            "in an allowed region (FAIRSHARE_REGION).",
            region=region,
            processing_regions=licence.processing_regions,
        )


def _with_languages(upserts: list[tuple[Document, str]]) -> list[tuple[Document, str]]:
    """Fill in each document's language where the source did not state one we know.

    Stated tags are normalised ("pt-BR" -> "pt"); the rest are detected per document, then
    settled over the batch so a rare misdetection does not give a document a language (and a
    BM25 analyser) of its own. Text with no detectable language is "und", and still indexed.
    The content hash stays that of the source record, so re-ingesting it is still recognised as
    unchanged.
    """
    stated = [normalise_language(document.language) for document, _ in upserts]
    missing = [i for i, language in enumerate(stated) if language is None]
    detected = detect_languages([upserts[i][0].text for i in missing])
    languages = list(stated)
    for i, language in zip(missing, settle_languages(detected), strict=True):
        languages[i] = language
    return [
        (document, digest)
        if document.language == language
        else (msgspec.structs.replace(document, language=language), digest)
        for (document, digest), language in zip(upserts, languages, strict=True)
    ]


async def _abort(
    catalog: CatalogWriter,
    dataset_id: str,
    generation: int,
    add_ids: Sequence[str],
    vector_indexes: Sequence[VectorIndex],
    lexical: BM25Index,
) -> None:
    """Remove what was staged for a generation that did not commit.

    The commit may have failed after the database applied it (a dropped connection), so the
    catalog decides: if it already shows the new generation, the staged files are live.
    """
    try:
        if (await catalog.generations()).get(dataset_id) == generation:
            return
    except Exception:
        return  # cannot tell; staged leftovers are invisible (SQL gates visibility), keep them
    for index in vector_indexes:
        index.abort(dataset_id, generation=generation, add_ids=add_ids)
    lexical.abort(dataset_id, generation=generation)


def _chunk_and_embed(
    dataset_id: str,
    upserts: list[tuple[Document, str]],
    embedder: Embedder,
    progress: bool,
) -> tuple[list[tuple[Document, str, list[Chunk]]], NDArray[np.float32]]:
    """Detect the documents' languages, then chunk and embed them.

    Detection (lingua, ~3 ms of CPU a document) comes first, on every core at once. It used to
    run on a thread beside the embedder, but it holds the GIL and wanted the cores the
    embedder's two threads were using, and cost ingest of 1,000 SciFact documents ~2.7 s of wall
    time against ~0.6 s on its own (README, Performance). Chunk ids hash each document with its
    language, so they are known before anything is embedded.

    Chunking stays on this thread, between embedder calls, because it uses the embedder's own
    tokenizer: a Hugging Face fast tokenizer is not safe to call from two threads at once (each
    call resets its truncation and padding, which can fail with "Already borrowed" or leave the
    other call untruncated). Embedder calls are the consecutive `EMBED_STEP` slices of all chunk
    texts in document order.
    """
    chunked: list[tuple[Document, str, list[Chunk]]] = []
    parts: list[NDArray[np.float32]] = []
    pending: list[str] = []
    with tqdm(desc="embedding", unit="chunk", disable=not progress, file=sys.stderr) as bar:
        for document, digest in _with_languages(upserts):
            windows = window_spans(document.text, embedder.token_spans(document.text))
            chunked.append((document, digest, chunks_at(dataset_id, document, windows)))
            pending += [indexed_text(document.title, document.text[a:b]) for a, b in windows]
            while len(pending) >= EMBED_STEP:
                parts.append(embedder.embed_passages(pending[:EMBED_STEP]))
                bar.update(EMBED_STEP)
                del pending[:EMBED_STEP]
        if pending:
            parts.append(embedder.embed_passages(pending))
            bar.update(len(pending))
    if not parts:
        return chunked, np.zeros((0, embedder.dim), dtype=np.float32)
    return chunked, np.vstack(parts)
