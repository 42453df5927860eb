from __future__ import annotations

import csv
import json
from pathlib import Path

from ingest.readers import Record, RecordError, read_source


def _split(items: list[Record | RecordError]) -> tuple[list[Record], list[RecordError]]:
    return (
        [i for i in items if isinstance(i, Record)],
        [i for i in items if isinstance(i, RecordError)],
    )


def test_jsonl_reads_every_field_and_reports_bad_lines_by_number(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    lines = [
        json.dumps(
            {
                "id": "a",
                "title": "A",
                "text": "alpha text",
                "url": "https://x/a",
                "published_at": "2026-01-02",
                "language": "en",
                "metadata": {"grade": "A"},
            }
        ),
        "{not json",
        json.dumps({"id": "b", "title": "B"}),
        "",
        json.dumps({"id": "c", "title": "C", "text": "   "}),
        json.dumps({"id": "d", "title": "D", "text": "delta", "colour": "red"}),
        json.dumps({"id": "e", "title": "E", "text": "echo"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    records, errors = _split(list(read_source(path)))
    assert [r.document.id for r in records] == ["a", "e"]
    first = records[0].document
    assert (first.url, first.published_at, first.language, first.metadata) == (
        "https://x/a",
        "2026-01-02",
        "en",
        {"grade": "A"},
    )
    assert [e.location for e in errors] == [
        "docs.jsonl:2",
        "docs.jsonl:3",
        "docs.jsonl:5",
        "docs.jsonl:6",
    ]
    reasons = [e.reason for e in errors]
    assert "malformed" in reasons[0].lower() or "json" in reasons[0].lower()
    assert "text" in reasons[1]
    assert "empty" in reasons[2]
    assert "colour" in reasons[3]


def test_csv_keeps_quoted_newlines_and_reports_the_starting_line(tmp_path: Path) -> None:
    path = tmp_path / "docs.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "title", "text", "url", "published_at", "sector"])
        writer.writerow(
            ["m1", "Copper", "line one\nline two, with a comma", "", "2026-02-01", "metals"]
        )
        writer.writerow(["m2", "Empty", "", "", "", ""])
        writer.writerow(["m3", "Chips", "earnings beat", "https://x/m3", "", "tech"])
    records, errors = _split(list(read_source(path)))
    assert [r.document.id for r in records] == ["m1", "m3"]
    assert records[0].document.text == "line one\nline two, with a comma"
    assert records[0].document.metadata == {"sector": "metals"}
    assert records[0].document.url is None
    assert [str(e) for e in errors] == ["docs.csv:4: text is empty or whitespace only"]


def test_csv_without_a_text_column_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id,title\nx,y\n")
    records, errors = _split(list(read_source(path)))
    assert records == [] and len(errors) == 1 and "text" in errors[0].reason


def test_markdown_folder_uses_stem_heading_and_verbatim_text(tmp_path: Path) -> None:
    (tmp_path / "nested").mkdir()
    (tmp_path / "case-one.md").write_text("# Marlow v Stroud\n\nAdverse possession.\n")
    (tmp_path / "nested" / "note.txt").write_text("Plain text, no heading.\n")
    (tmp_path / "ignored.pdf").write_bytes(b"%PDF")
    (tmp_path / "latin1.md").write_bytes("caf\xe9".encode("latin-1"))
    records, errors = _split(list(read_source(tmp_path)))
    by_id = {r.document.id: r.document for r in records}
    assert set(by_id) == {"case-one", "nested/note"}
    assert by_id["case-one"].title == "Marlow v Stroud"
    assert by_id["case-one"].text == "# Marlow v Stroud\n\nAdverse possession.\n"
    assert by_id["nested/note"].title == "note"
    assert len(errors) == 1 and errors[0].location == "latin1.md" and "UTF-8" in errors[0].reason
