from __future__ import annotations

import itertools

from contracts import Document
from ingest.chunking import (
    OVERLAP_TOKENS,
    WINDOW_TOKENS,
    chunk_document,
    content_hash,
    window_spans,
)
from ranking.embedder import SentenceEmbedder

LONG = " ".join(
    f"Sentence {i} discusses antibiotic stewardship, renal dosing and follow-up imaging."
    for i in range(120)
)


def test_every_chunk_is_an_exact_slice_of_the_document(embedder: SentenceEmbedder) -> None:
    document = Document(id="long", title="Stewardship", text=LONG)
    chunks = chunk_document("ds", document, embedder.token_spans)
    assert len(chunks) > 3
    for chunk in chunks:
        assert document.text[chunk.char_start : chunk.char_end] == chunk.text
        assert chunk.text == chunk.text.strip()
    assert chunks[0].char_start == 0 and chunks[-1].char_end == len(LONG)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_chunks_fit_the_embedder_window_and_overlap(embedder: SentenceEmbedder) -> None:
    chunks = chunk_document("ds", Document(id="long", title="t", text=LONG), embedder.token_spans)
    for chunk in chunks:
        # Snapping to word boundaries may add a word piece or two, never a window's worth.
        assert len(embedder.token_spans(chunk.text)) <= WINDOW_TOKENS + 8 < embedder.max_tokens
    for before, after in itertools.pairwise(chunks):
        assert after.char_start < before.char_end, "neighbouring chunks must overlap"
    overlap_tokens = len(embedder.token_spans(LONG[chunks[1].char_start : chunks[0].char_end]))
    assert OVERLAP_TOKENS - 8 <= overlap_tokens <= OVERLAP_TOKENS + 8


def test_short_document_is_one_chunk_and_ids_track_content(embedder: SentenceEmbedder) -> None:
    doc = Document(id="d", title="T", text="Short text.")
    again = chunk_document("ds", doc, embedder.token_spans)
    assert [c.text for c in again] == ["Short text."]
    assert again == chunk_document("ds", doc, embedder.token_spans)
    changed = Document(id="d", title="T2", text="Short text.")
    assert content_hash(changed) != content_hash(doc)
    assert chunk_document("ds", changed, embedder.token_spans)[0].id != again[0].id


def test_window_spans_never_cut_words() -> None:
    text = "alpha beta gamma delta epsilon"
    spans = [(0, 5), (6, 10), (11, 16), (17, 22), (23, 30)]
    windows = window_spans(text, spans, window=2, overlap=1)
    assert [text[s:e] for s, e in windows] == [
        "alpha beta",
        "beta gamma",
        "gamma delta",
        "delta epsilon",
    ]
