"""Readers for licensed sources: JSONL, CSV, or a folder of Markdown / plain-text files.

Each reader yields, in source order, either a `Record` (a valid `Document` and where it came from)
or a `RecordError` naming the line (or file) and the reason. Readers never stop at a bad record:
the caller decides whether good records still go in (see `ingest.run`).
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from contracts import Document

TEXT_SUFFIXES = {".md", ".markdown", ".txt"}
CSV_FIELDS = {"id", "title", "text", "url", "published_at", "language"}


@dataclass(frozen=True, slots=True)
class Record:
    document: Document
    location: str


@dataclass(frozen=True, slots=True)
class RecordError:
    location: str
    reason: str

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


Item = Record | RecordError
_decoder = msgspec.json.Decoder(Document)


def read_source(path: Path) -> Iterator[Item]:
    """Dispatch on what `path` is: a folder of text files, a .csv, or JSON Lines (anything else)."""
    if path.is_dir():
        yield from read_text_folder(path)
    elif path.suffix.lower() == ".csv":
        yield from read_csv(path)
    else:
        yield from read_jsonl(path)


BLANK_TEXT = "text is empty or whitespace only"
# Characters that show nothing: control (Cc) and format (Cf) characters such as a byte-order
# mark or a zero-width space, which `str.isspace` does not count. A text of only these and
# whitespace would be indexed as a document no query can reach.
_INVISIBLE = ("Cc", "Cf")


def is_blank(text: str) -> bool:
    """True when `text` has nothing to index: only whitespace and invisible characters."""
    return all(c.isspace() or unicodedata.category(c) in _INVISIBLE for c in text)


def _checked(document: Document, location: str) -> Item:
    if is_blank(document.text):
        return RecordError(location, BLANK_TEXT)
    return Record(document, location)


def read_jsonl(path: Path) -> Iterator[Item]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            location = f"{path.name}:{number}"
            if not raw.strip():
                continue
            try:
                document = _decoder.decode(raw)
            except msgspec.DecodeError as exc:
                yield RecordError(location, _reason(exc))
                continue
            yield _checked(document, location)


def read_csv(path: Path) -> Iterator[Item]:
    # newline="" is what the csv module needs to keep newlines inside quoted fields intact.
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"id", "text"} - set(reader.fieldnames or [])
        if missing:
            yield RecordError(f"{path.name}:1", f"header lacks column(s) {sorted(missing)}")
            return
        first_line = 2
        for row in reader:
            location = f"{path.name}:{first_line}"
            first_line = reader.line_num + 1
            if None in row:
                yield RecordError(location, "row has more fields than the header")
                continue
            if is_blank(row.get("text") or ""):
                yield RecordError(location, BLANK_TEXT)
                continue
            fields = {k: v for k, v in row.items() if k in CSV_FIELDS and v not in ("", None)}
            metadata = {k: v for k, v in row.items() if k not in CSV_FIELDS and v}
            try:
                document = msgspec.convert({**fields, "metadata": metadata}, Document)
            except msgspec.ValidationError as exc:
                yield RecordError(location, _reason(exc))
                continue
            yield _checked(document, location)


def read_text_folder(root: Path) -> Iterator[Item]:
    """One document per file. The id is the path below `root` without its suffix; the title is
    the first Markdown `# ` heading (else the file name); the text is the whole file, verbatim."""
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in TEXT_SUFFIXES):
        location = str(path.relative_to(root))
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            yield RecordError(location, f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
            continue
        if is_blank(text):  # an empty file would otherwise fail as a length constraint
            yield RecordError(location, BLANK_TEXT)
            continue
        doc_id = path.relative_to(root).with_suffix("").as_posix()
        title = next(
            (line[2:].strip() for line in io.StringIO(text) if line.startswith("# ")), path.stem
        )
        try:
            document = Document(id=doc_id, title=title[:1000], text=text)
            msgspec.convert(msgspec.to_builtins(document), Document)  # run the constraints
        except msgspec.ValidationError as exc:
            yield RecordError(location, _reason(exc))
            continue
        yield _checked(document, location)


# msgspec's words for `"text": ""` (the contract's min_length), which reach a publisher as the
# same error as a whitespace-only text: what they must fix is the same.
_EMPTY_TEXT = "Expected `str` of length >= 1 - at `$.text`"


def _reason(exc: Exception) -> str:
    text = str(exc)
    if text == _EMPTY_TEXT:
        return BLANK_TEXT
    return text if len(text) <= 300 else text[:297] + "..."
