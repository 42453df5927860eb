"""Dropping a revoked dataset from BM25 and from the cross-encoder's score cache (the vector
indexes have theirs in the conformance suite, `test_vectors.py`)."""

from __future__ import annotations

from pathlib import Path

from ranking.lexical import BM25Index, LexicalDoc
from ranking.rerank_cache import ScoreCache

MED = [
    LexicalDoc("m1", "Pneumonia", "Amoxicillin is first-line for pneumonia in adults.", "en"),
    LexicalDoc("m2", "Sepsis", "Give crystalloid fluids early in septic shock.", "en"),
    LexicalDoc("m3", "Lungenentzündung", "Amoxicillin ist bei Pneumonie das Mittel.", "de"),
]
LAW = [LexicalDoc("l1", "Possession", "Adverse possession needs open occupation.", "en")]


def test_bm25_drop_removes_every_language_and_generation_and_counts_them(tmp_path: Path) -> None:
    index = BM25Index(tmp_path / "bm25")
    index.build("med", 1, MED[:2])
    index.build("med", 2, MED)  # generation 1 not yet finalized: both are on disk
    index.build("law", 1, LAW)
    gens = {"med": 2, "law": 1}
    assert index.search("amoxicillin pneumonia", 10, gens)[0][0] == "m1"  # loaded in memory
    sizes = [p.stat().st_size for p in (tmp_path / "bm25" / "med").rglob("*") if p.is_file()]
    removed = index.drop("med")
    assert (removed.items, removed.files, removed.bytes) == (3, len(sizes), sum(sizes))
    assert not (tmp_path / "bm25" / "med").exists()
    # A caller still naming the dropped generation finds nothing of it: memory went too.
    found = index.search("amoxicillin pneumonia possession", 10, gens)
    assert [chunk_id for chunk_id, _ in found] == ["l1"]
    assert index.drop("med").items == 0


def test_a_server_unloads_the_datasets_it_no_longer_serves(tmp_path: Path) -> None:
    index = BM25Index(tmp_path / "bm25")
    index.build("med", 1, MED)
    index.build("law", 1, LAW)
    assert index.search("pneumonia possession", 10, {"med": 1, "law": 1})
    assert index.retain({"law"}) == ["med"]
    assert index.retain({"law"}) == []


def test_score_cache_forgets_every_query_s_scores_of_given_chunks() -> None:
    cache = ScoreCache()
    cache.put_many({("q1", "m1"): 0.9, ("q2", "m1"): 0.4, ("q1", "l1"): 0.1, ("q2", "m2"): 0.3})
    assert cache.chunk_ids() == {"m1", "m2", "l1"}
    assert cache.discard_chunks(["m1", "m2", "unknown"]) == 3
    assert cache.chunk_ids() == {"l1"}
    assert cache.get_many([("q1", "m1"), ("q1", "l1")]) == {("q1", "l1"): 0.1}
