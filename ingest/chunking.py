"""Token-aware chunking with overlap; every chunk keeps its exact character span."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence

import msgspec

from contracts import Chunk, Document

# all-MiniLM-L6-v2 reads 256 word-pieces. 200 leaves room for the title we prepend and the two
# special tokens, so no chunk is silently truncated by the embedder.
WINDOW_TOKENS = 200
# 20% overlap: a sentence cut by one window boundary is whole in the neighbouring chunk.
OVERLAP_TOKENS = 40
# How far a boundary may move to land on whitespace instead of mid-word.
SNAP_CHARS = 40
_CHUNK_NAMESPACE = uuid.UUID("5b0f3c1e-7f4e-4b7a-9a53-6f1f2a0d9e11")

TokenSpans = Callable[[str], list[tuple[int, int]]]


def content_hash(document: Document) -> str:
    """Hash of everything that affects what we index or cite; a change means re-chunking."""
    return hashlib.sha256(msgspec.json.encode(document)).hexdigest()


def chunk_id(dataset_id: str, document_id: str, digest: str, ordinal: int) -> str:
    """Deterministic: the same document content always yields the same chunk ids, and any change
    to the content yields new ones, so caches keyed by chunk id never serve stale text."""
    return uuid.uuid5(
        _CHUNK_NAMESPACE, f"{dataset_id}\x00{document_id}\x00{digest}\x00{ordinal}"
    ).hex


def window_spans(
    text: str,
    token_spans: Sequence[tuple[int, int]],
    *,
    window: int = WINDOW_TOKENS,
    overlap: int = OVERLAP_TOKENS,
) -> list[tuple[int, int]]:
    """Character spans of overlapping token windows over `text`, snapped to word boundaries."""
    if not 0 <= overlap < window:
        raise ValueError("overlap must be smaller than the window")
    if not token_spans:
        return [(0, len(text))] if text.strip() else []
    spans: list[tuple[int, int]] = []
    step = window - overlap
    start_token = 0
    while True:
        end_token = min(start_token + window, len(token_spans))
        start = _snap_back(text, token_spans[start_token][0])
        end = _snap_forward(text, token_spans[end_token - 1][1])
        if not spans or (start, end) != spans[-1]:
            spans.append((start, end))
        if end_token == len(token_spans):
            return spans
        start_token += step


def _snap_back(text: str, pos: int) -> int:
    limit = max(0, pos - SNAP_CHARS)
    i = pos
    while i > limit and not text[i - 1].isspace():
        i -= 1
    return i if i == 0 or text[i - 1].isspace() else pos


def _snap_forward(text: str, pos: int) -> int:
    limit = min(len(text), pos + SNAP_CHARS)
    i = pos
    while i < limit and not text[i].isspace():
        i += 1
    return i if i == len(text) or text[i].isspace() else pos


def chunk_document(dataset_id: str, document: Document, token_spans: TokenSpans) -> list[Chunk]:
    return chunks_at(dataset_id, document, window_spans(document.text, token_spans(document.text)))


def chunks_at(dataset_id: str, document: Document, spans: Sequence[tuple[int, int]]) -> list[Chunk]:
    """The chunks of `document` at these character spans (from `window_spans`).

    Split from `chunk_document` so ingest can tokenize and embed a document before its language
    is known: the spans do not depend on it, but the ids hash the whole document, language too.
    """
    digest = content_hash(document)
    return [
        Chunk(
            id=chunk_id(dataset_id, document.id, digest, ordinal),
            dataset_id=dataset_id,
            document_id=document.id,
            ordinal=ordinal,
            text=document.text[start:end],
            char_start=start,
            char_end=end,
        )
        for ordinal, (start, end) in enumerate(spans)
    ]


def indexed_text(title: str, text: str) -> str:
    """What the embedder and BM25 see for a chunk: its document title gives it context."""
    return f"{title}\n{text}" if title else text
