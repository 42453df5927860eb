"""Statement CSV, HTML and PDF: what an owner (or their accountant's script) would notice.

Statements are built by hand from a list of hits, the way the ledger sums them, so every part of
one statement (datasets, documents, days, summary) adds up like a real one.
"""

from __future__ import annotations

import csv
import gc
import io
import os
import subprocess
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from matplotlib.figure import Figure
from pypdf import PdfReader

from contracts import InvalidInput
from contracts.ledger import (
    DatasetLine,
    DayLine,
    DocumentLine,
    LicenceTerms,
    Payout,
    PayoutState,
    Statement,
)
from ledger.statement_formats import (
    CSV_HEADER,
    format_units,
    statement_csv,
    statement_html,
    statement_pdf,
)

AT = datetime(2026, 2, 1, 6, 0, tzinfo=UTC)
ODD_OWNER = 'Smith & <Sons> "Ltd"'
ODD_DATASET = 'Q&A <beta> "raw", v2'
ODD_TITLE = 'Hello, "world"\nsecond line & <more>'
ODD_ATTRIBUTION = '© <b>Smith</b> & "Sons", 2026'


def terms(
    lid: str, price: int, share_bps: int, currency: str = "USD", **kw: object
) -> LicenceTerms:
    return LicenceTerms(
        licence_id=lid,
        name=str(kw.get("name", f"Licence {lid}")),
        currency=currency,
        price_per_hit_micros=price,
        owner_share_bps=share_bps,
        snippet_cap_chars=1_200,
        attribution=str(kw.get("attribution", f"Source: {lid}")),
    )


def statement(
    *,
    owner_name: str = "Acme Press",
    currency: str = "USD",
    closed: bool = True,
    datasets: list[tuple[str, str, LicenceTerms, int]] | None = None,
    days: int = 31,
    titles: dict[str, str] | None = None,
    reversal: tuple[int, int] = (0, 0),
    carried_in: int = 0,
    payout_state: PayoutState | None = "paid",
    failure: str | None = None,
) -> Statement:
    """A January 2026 statement. `datasets` are (id, name, terms, documents); each document gets
    a few hits on some days, so totals, days and top documents all agree."""
    if datasets is None:
        datasets = [
            ("guides", "Field guides", terms("std-v1", 1_333, 7_500), 10),
            ("cases", "Case law", terms("cases-v1", 999, 5_000), 8),
            ("atlas", "World atlas", terms("atlas-v1", 250_000, 6_667), 4),
        ]
    hits: list[tuple[int, str, str, LicenceTerms, str]] = []  # day, dataset, name, terms, doc
    for j, (did, name, lic, n_docs) in enumerate(datasets):
        for k in range(n_docs):
            for day in range(1, days + 1):
                hits += [(day, did, name, lic, f"{did}-doc-{k}")] * ((day * (j + 2) + k * 3) % 5)
    owner_of = {
        lic.licence_id: lic.price_per_hit_micros * lic.owner_share_bps // 10_000
        for *_, lic, _ in datasets
    }

    def sums(group: list[tuple[int, str, str, LicenceTerms, str]]) -> tuple[int, int, int]:
        gross = sum(h[3].price_per_hit_micros for h in group)
        return len(group), gross, sum(owner_of[h[3].licence_id] for h in group)

    lines = []
    for did, name, lic, _ in datasets:
        n, gross, owner = sums([h for h in hits if h[1] == did])
        if n:
            lines.append(
                DatasetLine(
                    dataset_id=did,
                    dataset_name=name,
                    licence_id=lic.licence_id,
                    hit_count=n,
                    gross_micros=gross,
                    owner_micros=owner,
                    platform_micros=gross - owner,
                )
            )
    docs = []
    for doc_id in sorted({h[4] for h in hits}):
        group = [h for h in hits if h[4] == doc_id]
        n, gross, owner = sums(group)
        title = (titles or {}).get(doc_id, f"Document {doc_id}")
        docs.append(
            DocumentLine(
                dataset_id=group[0][1],
                document_id=doc_id,
                title=title,
                hit_count=n,
                gross_micros=gross,
                owner_micros=owner,
            )
        )
    docs.sort(key=lambda d: (-d.gross_micros, -d.hit_count, d.document_id))
    day_lines = []
    for day in range(1, days + 1):
        n, gross, owner = sums([h for h in hits if h[0] == day])
        day_lines.append(
            DayLine(day=f"2026-01-{day:02d}", hit_count=n, gross_micros=gross, owner_micros=owner)
        )
    n, gross, owner = sums(hits)
    reversal_count, reversed_owner = reversal
    net = owner - reversed_owner
    payable = carried_in + net
    minor = 10 ** (6 - (0 if currency == "JPY" else 2))
    amount = max(payable, 0) // minor * minor  # payouts are whole minor units
    payout = None
    if payout_state is not None:
        payout = Payout(
            payout_id="po_1",
            owner_id="acme",
            period="2026-01",
            attempt=2 if failure else 1,
            currency=currency,
            amount_micros=amount,
            destination="acct_1",
            state=payout_state,
            transfer_id=None if failure else "tr_ABC123",
            failure=failure,
            created_at=AT,
            updated_at=AT,
        )
    paid = amount if payout_state in ("paid", "submitted") else 0
    return Statement(
        owner_id="acme",
        owner_name=owner_name,
        period="2026-01",
        currency=currency,
        closed=closed,
        hit_count=n,
        gross_micros=gross,
        owner_micros=owner,
        platform_micros=gross - owner,
        reversal_count=reversal_count,
        reversed_owner_micros=reversed_owner,
        net_owner_micros=net,
        carried_in_micros=carried_in,
        payable_micros=payable,
        payout_micros=paid,
        carried_forward_micros=payable - paid,
        payout=payout,
        datasets=lines,
        documents=docs[:20],
        days=day_lines,
        licences=sorted(
            {lic.licence_id: lic for *_, lic, _ in datasets}.values(), key=lambda t: t.licence_id
        ),
    )


def odd() -> Statement:
    """User text full of markup and CSV metacharacters; open period; owes from last month."""
    lic = terms("odd-v1", 1_500, 7_000, name='Odd & <new> "terms"', attribution=ODD_ATTRIBUTION)
    return statement(
        owner_name=ODD_OWNER,
        closed=False,
        datasets=[
            ("odd", ODD_DATASET, lic, 3),
            ("plain", "Plain, simple", terms("p-v1", 2_000, 5_000), 2),
        ],
        titles={"odd-doc-0": ODD_TITLE},
        reversal=(3, 3_150),
        carried_in=-2_500,
        payout_state=None,
    )


def jpy() -> Statement:
    # Beyond Latin-1, which the PDF's built-in fonts could not draw.
    return statement(
        owner_name="Wydawnictwo Łódź · Издательство",
        currency="JPY",
        datasets=[("kanji", "Kanji-Lexikon", terms("jp-v1", 3_000_000, 7_000, "JPY"), 5)],
    )


def failed() -> Statement:
    return statement(payout_state="failed", failure="account closed, ask owner for new details")


def empty() -> Statement:
    return statement(datasets=[], days=0, carried_in=1_234_567, payout_state=None)


def full() -> Statement:
    """The most a normal month holds: 31 days, five datasets with long names, top-20 documents
    whose titles run far past a line."""
    specs = [
        (
            f"ds-{j}",
            f"Collected regional newspapers and periodicals, part {j}",
            terms(f"l-{j}", 1_000 + j, 6_000),
            5,
        )
        for j in range(5)
    ]
    titles = {
        f"ds-{j}-doc-{k}": f"A very long document title number {j}.{k} " * 6
        for j in range(5)
        for k in range(5)
    }
    return statement(datasets=specs, titles=titles, reversal=(12, 9_999), carried_in=123_456_789)


STATEMENTS: dict[str, Callable[[], Statement]] = {
    "normal": statement,
    "odd": odd,
    "jpy": jpy,
    "failed": failed,
    "empty": empty,
    "full": full,
}


@pytest.fixture(params=list(STATEMENTS))
def st(request: pytest.FixtureRequest) -> Statement:
    return STATEMENTS[request.param]()


# format_units


@pytest.mark.parametrize(
    ("micros", "currency", "text"),
    [
        (1_333_000, "USD", "1.333"),
        (1_000_000, "USD", "1.00"),
        (-2_500, "USD", "-0.0025"),
        (0, "USD", "0.00"),
        (1, "EUR", "0.000001"),
        (1_234_567_891_234, "USD", "1,234,567.891234"),
        (-1_234_000_000, "GBP", "-1,234.00"),
        (5_000_000, "JPY", "5"),
        (5_500_000, "JPY", "5.5"),
        (12_345_000_000, "JPY", "12,345"),
        (1_000, "KWD", "0.001"),
        (2_000_000, "KWD", "2.000"),
    ],
)
def test_format_units_is_exact(micros: int, currency: str, text: str) -> None:
    assert format_units(micros, currency) == text


def test_format_units_refuses_a_currency_whose_minor_units_it_would_guess() -> None:
    with pytest.raises(InvalidInput):
        format_units(1_000_000, "XXX")


# CSV


def read_csv(s: Statement) -> list[dict[str, str]]:
    text = statement_csv(s)
    assert text.splitlines()[0] == ",".join(CSV_HEADER)
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_csv_summary_equals_the_statement(st: Statement) -> None:
    rows = read_csv(st)
    assert {r["owner_id"] for r in rows} == {"acme"} and {r["period"] for r in rows} == {"2026-01"}
    summary = {r["key"]: int(r["value"]) for r in rows if r["section"] == "summary"}
    assert summary == {
        "hit_count": st.hit_count,
        "gross": st.gross_micros,
        "owner": st.owner_micros,
        "platform": st.platform_micros,
        "reversal_count": st.reversal_count,
        "reversals": st.reversed_owner_micros,
        "net": st.net_owner_micros,
        "carried_in": st.carried_in_micros,
        "payable": st.payable_micros,
        "payout": st.payout_micros,
        "carried_forward": st.carried_forward_micros,
        "closed": int(st.closed),
    }
    counts = Counter(r["section"] for r in rows)
    assert counts == Counter(
        summary=12,
        dataset=len(st.datasets),
        document=len(st.documents),
        day=len(st.days),
        licence=len(st.licences),
    )


def test_csv_lines_add_up_to_the_summary(st: Statement) -> None:
    rows = read_csv(st)

    def total(section: str, column: str) -> int:
        return sum(int(r[column]) for r in rows if r["section"] == section)

    summary = {r["key"]: int(r["value"]) for r in rows if r["section"] == "summary"}
    for section in ("dataset", "day"):
        assert total(section, "hit_count") == summary["hit_count"]
        assert total(section, "gross_micros") == summary["gross"]
        assert total(section, "owner_micros") == summary["owner"]
    assert total("dataset", "platform_micros") == summary["platform"]
    assert summary["net"] == summary["owner"] - summary["reversals"]
    assert summary["payable"] == summary["carried_in"] + summary["net"]
    assert summary["carried_forward"] == summary["payable"] - summary["payout"]


def test_csv_round_trips_awkward_text_exactly() -> None:
    s = odd()
    rows = read_csv(s)
    datasets = {r["key"]: r for r in rows if r["section"] == "dataset"}
    assert datasets["odd"]["label"] == ODD_DATASET
    assert datasets["plain"]["label"] == "Plain, simple"
    titles = {r["key"]: r["label"] for r in rows if r["section"] == "document"}
    assert titles["odd-doc-0"] == ODD_TITLE
    licence = next(r for r in rows if r["section"] == "licence" and r["key"] == "odd-v1")
    assert licence["attribution"] == ODD_ATTRIBUTION
    assert (licence["price_per_hit_micros"], licence["owner_share_bps"]) == ("1500", "7000")
    assert next(r for r in rows if r["key"] == "carried_in")["value"] == "-2500"
    assert {r["section"]: len(r) for r in rows} == dict.fromkeys(
        ("summary", "dataset", "document", "day", "licence"), len(CSV_HEADER)
    )


def test_csv_payout_row_says_what_happened() -> None:
    paid = next(r for r in read_csv(statement()) if r["key"] == "payout")
    assert (paid["payout_state"], paid["transfer_id"], paid["label"]) == ("paid", "tr_ABC123", "")
    bad = next(r for r in read_csv(failed()) if r["key"] == "payout")
    assert (bad["value"], bad["payout_state"], bad["transfer_id"]) == ("0", "failed", "")
    assert bad["label"] == "account closed, ask owner for new details"
    none = next(r for r in read_csv(empty()) if r["key"] == "payout")
    assert (none["value"], none["payout_state"]) == ("0", "")


# HTML


def test_html_escapes_every_user_string() -> None:
    page = statement_html(odd())
    for raw in (
        ODD_OWNER,
        ODD_DATASET,
        ODD_ATTRIBUTION,
        "<sons>",
        "<beta>",
        "<more>",
        "<b>Smith",
        'Odd & <new> "terms"',
    ):
        assert raw not in page
    assert "Smith &amp; &lt;Sons&gt; &quot;Ltd&quot;" in page
    assert "Q&amp;A &lt;beta&gt; &quot;raw&quot;, v2" in page
    assert "Hello, &quot;world&quot;\nsecond line &amp; &lt;more&gt;" in page
    assert "© &lt;b&gt;Smith&lt;/b&gt; &amp; &quot;Sons&quot;, 2026" in page


def test_html_is_one_self_contained_page_with_an_inline_chart(st: Statement) -> None:
    page = statement_html(st)
    assert page.startswith("<!doctype html>") and page.count("<html") == 1
    for external in ("<script", "<link", "src=", "@import", "url(http", "<img", "<?xml"):
        assert external not in page
    assert "@page" in page and "A4" in page
    assert ("<svg" in page) == (st.hit_count > 0)
    assert page == statement_html(st)  # deterministic: same statement, same page


def test_html_shows_the_provisional_banner_only_while_the_period_is_open() -> None:
    assert "class=banner>Provisional" in statement_html(odd())
    for s in (statement(), jpy(), failed(), empty()):
        assert "Provisional" not in statement_html(s)


def test_html_shows_figures_datasets_documents_and_terms() -> None:
    s = statement()
    page = statement_html(s)
    for micros in (
        s.gross_micros,
        s.owner_micros,
        s.payable_micros,
        s.payout_micros,
        s.carried_forward_micros,
    ):
        assert f">{format_units(micros, 'USD')}<" in page
    for d in s.datasets:
        assert f"{d.dataset_name} ({d.dataset_id})" in page
    for doc in s.documents:
        assert f">Document {doc.document_id}<" in page
    assert "paid, transfer tr_ABC123" in page
    assert ">66.67%<" in page and ">75%<" in page and ">0.001333 USD<" in page
    assert "1,200 chars" in page


def test_html_shows_no_more_than_twenty_documents() -> None:
    s = statement(datasets=[("big", "Big", terms("b-v1", 1_000, 5_000), 30)])
    docs = [
        DocumentLine(
            dataset_id="big",
            document_id=f"d{i:02d}",
            title=f"Title {i:02d}",
            hit_count=1,
            gross_micros=1_000,
            owner_micros=500,
        )
        for i in range(25)
    ]
    many = msgspec.structs.replace(s, documents=docs)
    page = statement_html(many)
    assert "Title 19" in page and "Title 20" not in page


def test_html_of_an_empty_month_says_so() -> None:
    page = statement_html(empty())
    assert "No hits in this period" in page and "No documents were delivered" in page
    assert ">1.234567<" in page  # carried in, shown exactly


# PDF


def pdf_text(s: Statement) -> tuple[bytes, int, str]:
    data = statement_pdf(s)
    reader = PdfReader(io.BytesIO(data))
    return data, len(reader.pages), "\n".join(p.extract_text() for p in reader.pages)


def test_pdf_is_one_page_with_the_figures(st: Statement) -> None:
    data, pages, text = pdf_text(st)
    assert data.startswith(b"%PDF-")
    assert pages == 1
    flat = " ".join(text.split())
    assert st.owner_name in flat and "2026-01" in flat and "January 2026" in flat
    for micros in (st.gross_micros, st.payable_micros, st.payout_micros, st.carried_forward_micros):
        assert format_units(micros, st.currency) in flat
    for d in st.datasets:
        assert d.dataset_name in flat
    assert ("Provisional" in flat) == (not st.closed)
    assert data == statement_pdf(st)  # invariant: no dates or random ids


def test_pdf_shows_a_failed_payout_and_the_odd_names() -> None:
    _, _, text = pdf_text(failed())
    flat = " ".join(text.split())
    assert "failed (attempt 2)" in flat and "account closed, ask owner for new details" in flat
    _, pages, text = pdf_text(odd())
    flat = " ".join(text.split())
    assert pages == 1
    for raw in (ODD_OWNER, ODD_DATASET, 'Hello, "world" second line & <more>', "-0.0025"):
        assert raw in flat


def test_pdf_cuts_long_titles_to_one_line_but_keeps_their_start() -> None:
    _, _, text = pdf_text(full())
    lines = [line for line in text.splitlines() if "A very long document title number 3.3" in line]
    assert len(lines) == 1 and "…" in lines[0]
    assert "A very long document title number 3.3 " * 6 in statement_html(full())  # HTML: whole


def test_pdf_embeds_the_chart_only_when_there_were_hits() -> None:
    def images(s: Statement) -> int:
        page = PdfReader(io.BytesIO(statement_pdf(s))).pages[0]
        return len(page.images)

    assert images(statement()) == 1
    assert images(empty()) == 0


# Resources


def live_figures() -> int:
    gc.collect()
    # isinstance on every live object touches torch's deprecated module attributes, which warn.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return sum(isinstance(o, Figure) for o in gc.get_objects())


def test_rendering_many_statements_leaves_no_figures_open() -> None:
    import matplotlib.pyplot as plt  # here, not at the top: the no-display test must not load it

    s = statement(datasets=[("one", "One", terms("o-v1", 1_000, 5_000), 2)], days=7)
    before_pyplot = plt.get_fignums()
    statement_html(s)  # warm caches (fonts) before counting
    before = live_figures()
    for i in range(50):
        statement_pdf(s) if i % 2 else statement_html(s)
    assert plt.get_fignums() == before_pyplot
    assert live_figures() <= before


def test_concurrent_renders_match_serial_ones() -> None:
    # The service renders PDFs in worker threads (asyncio.to_thread); matplotlib state is global.
    statements = [statement(), odd(), jpy(), failed()]
    serial = [(statement_html(s), statement_pdf(s)) for s in statements]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda s: (statement_html(s), statement_pdf(s)), statements))
    assert threaded == serial


def test_rendering_needs_no_display() -> None:
    # A GUI backend and no DISPLAY: anything that went through pyplot would fail here.
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MPLBACKEND"] = "tkagg"
    code = (
        "from tests.ledger.test_statement_formats import statement\n"
        "from ledger.statement_formats import statement_html, statement_pdf\n"
        "assert '<svg' in statement_html(statement()) and statement_pdf(statement())[:4] == b'%PDF'\n"
        "import sys; assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr
