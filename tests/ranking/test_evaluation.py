"""BEIR readers, best-chunk aggregation and metrics, on tiny hand-made data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from contracts import InvalidInput
from ranking.evaluation import (
    documents_by_best_chunk,
    load_beir,
    percentile,
    ranx_run,
    read_corpus,
    read_qrels,
    score_rankings,
)


def write_beir(root: Path, qrels: str, queries: list[dict[str, object]] | None = None) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(
        "\n".join(
            json.dumps(d)
            for d in [
                {"_id": 7, "title": "Seven", "text": "a number", "metadata": {"x": 1}},
                {"_id": "d2", "text": "no title here"},
                {"_id": "d3", "title": None, "text": None},
            ]
        )
        + "\n"
    )
    queries = queries or [
        {"_id": "1", "text": "first"},
        {"_id": "2", "text": "second", "metadata": {}},
        {"_id": "10", "text": "tenth"},
        {"_id": "99", "text": "never judged"},
    ]
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (root / "qrels" / "test.tsv").write_text(qrels)
    return root


def test_qrels_skip_the_header_and_keep_score_zero_rows(tmp_path: Path) -> None:
    path = tmp_path / "test.tsv"
    path.write_text("query-id\tcorpus-id\tscore\n1\tA\t2\n1\tB\t0\n2\tC\t0\n1\tA\t1\n\n3\tD\t1.0\n")
    assert read_qrels(path) == {
        "1": {"A": 2, "B": 0},  # the pair judged twice keeps its higher grade
        "2": {"C": 0},  # judged, nothing relevant: still a judged query
        "3": {"D": 1},
    }


def test_qrels_reject_a_bad_row_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "test.tsv"
    path.write_text("query-id\tcorpus-id\tscore\n1\tA\thigh\n")
    with pytest.raises(InvalidInput, match=r"test\.tsv:2"):
        read_qrels(path)
    path.write_text("1\tA\n")
    with pytest.raises(InvalidInput, match="3 tab-separated columns"):
        read_qrels(path)


def test_corpus_ids_become_strings_and_unknown_fields_are_ignored(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "beir", "query-id\tcorpus-id\tscore\n1\t7\t1\n")
    docs = list(read_corpus(root / "corpus.jsonl"))
    assert [(d.id, d.title, d.text) for d in docs] == [
        ("7", "Seven", "a number"),
        ("d2", "", "no title here"),
        ("d3", "", ""),
    ]


def test_only_judged_queries_are_loaded_in_numeric_order(tmp_path: Path) -> None:
    root = write_beir(
        tmp_path / "beir", "query-id\tcorpus-id\tscore\n10\t7\t1\n2\td2\t0\n1\t7\t1\n"
    )
    collection = load_beir(root, "test")
    assert list(collection.queries) == ["1", "2", "10"]
    assert collection.qrels["2"] == {"d2": 0}


def test_a_qrel_for_an_unknown_query_or_a_missing_file_is_named(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "beir", "query-id\tcorpus-id\tscore\n5\t7\t1\n")
    with pytest.raises(InvalidInput, match="missing from"):
        load_beir(root, "test")
    with pytest.raises(InvalidInput, match=r"qrels/dev\.tsv does not exist"):
        load_beir(root, "dev")


def test_queries_can_come_from_another_file_with_the_same_ids(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "beir", "query-id\tcorpus-id\tscore\n1\t7\t1\n2\td2\t1\n")
    other = tmp_path / "de-queries.jsonl"
    other.write_text(
        json.dumps({"_id": "2", "text": "zweite"})
        + "\n"
        + json.dumps({"_id": "1", "text": "erste"})
    )
    collection = load_beir(root, "test", other)
    assert collection.queries == {"1": "erste", "2": "zweite"}
    other.write_text(json.dumps({"_id": "1", "text": "erste"}) + "\n")
    with pytest.raises(InvalidInput, match=r"de-queries\.jsonl"):
        load_beir(root, "test", other)


def test_a_document_ranks_by_its_best_chunk() -> None:
    document_of = {"a1": "A", "a2": "A", "b1": "B", "c1": "C"}
    ranked = ["b1", "a2", "gone", "b1-dup", "a1", "c1"]
    document_of["b1-dup"] = "B"
    assert documents_by_best_chunk(ranked, document_of) == ["B", "A", "C"]
    assert documents_by_best_chunk(ranked, document_of, depth=2) == ["B", "A"]


def test_the_run_keeps_the_pipeline_order_even_where_scores_would_tie() -> None:
    run = ranx_run({"q": ["z", "a", "m"]})["q"]
    assert sorted(run, key=lambda d: -run[d]) == ["z", "a", "m"]


def dcg(gains: list[int]) -> float:
    """DCG from the definition (Järvelin & Kekäläinen 2002, linear gain, log2(rank + 1))."""
    return sum(g / math.log2(rank + 2) for rank, g in enumerate(gains))


def test_ndcg_recall_and_mrr_match_their_definitions() -> None:
    qrels = {
        "q1": {"A": 3, "B": 1, "C": 0, "D": 2},
        "q2": {"E": 1},
        "q3": {"F": 0},  # only a non-relevant judgement: kept, scores 0 everywhere
    }
    rankings = {"q1": ["C", "B", "X", "A"], "q2": ["Y", "Z", "E"], "q3": ["F"]}
    scores = score_rankings(qrels, rankings)

    q1 = dcg([0, 1, 0, 3]) / dcg([3, 2, 1])
    q2 = dcg([0, 0, 1]) / dcg([1])
    assert scores["ndcg@10"] == pytest.approx((q1 + q2 + 0.0) / 3)
    assert scores["recall@100"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert scores["mrr@10"] == pytest.approx((1 / 2 + 1 / 3 + 0) / 3)


def test_a_query_with_no_ranking_scores_zero_and_still_counts() -> None:
    scores = score_rankings({"q1": {"A": 1}, "q2": {"B": 1}}, {"q1": ["A"]})
    assert scores == {"ndcg@10": 0.5, "recall@100": 0.5, "mrr@10": 0.5}


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([40.0, 10.0, 30.0, 20.0], 50) == pytest.approx(25.0)
    assert percentile([40.0, 10.0, 30.0, 20.0], 95) == pytest.approx(38.5)
    assert percentile([5.0], 95) == 5.0
    with pytest.raises(ValueError):
        percentile([], 50)
