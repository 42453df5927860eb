"""Owner statements as one CSV table, one printable HTML page and one A4 PDF page.

All three render the same `contracts.Statement`. Amounts stay integer micros until `format_units`
turns them into exact text; the chart plots floats, which is fine: they are coordinates, not
amounts anyone is paid. Rendering is deterministic (same statement, same bytes) and needs no
display: charts are plain `matplotlib.figure.Figure`s, never registered with pyplot.

CSV (`statement_csv`) is long format: every row has every column of `CSV_HEADER`, cells that do
not apply to the row's `section` are empty, amounts are integer micros::

    owner_id,period,currency,section,key,label,dataset_id,licence_id,hit_count,gross_micros,
    owner_micros,platform_micros,value,payout_state,transfer_id,price_per_hit_micros,
    owner_share_bps,snippet_cap_chars,attribution

- ``summary``: one row per figure; `key` names it, `value` holds it. Keys, in order: hit_count,
  gross, owner, platform, reversal_count, reversals (owner share taken back, positive), net,
  carried_in, payable, payout, carried_forward, closed (1 or 0). The payout row also fills
  `payout_state`, `transfer_id` and, in `label`, the failure reason.
- ``dataset``: key=dataset_id, label=dataset name, licence_id, hit_count, gross/owner/platform.
- ``region``: key=the region whose deployment processed the hits ("unrecorded" for hits from
  before regions were kept), hit_count, gross/owner/platform.
- ``document``: key=document_id, label=title, dataset_id, hit_count, gross/owner.
- ``day``: key=YYYY-MM-DD (UTC), hit_count, gross/owner.
- ``licence``: key=licence_id, label=licence name, price_per_hit_micros, owner_share_bps,
  snippet_cap_chars, attribution; `currency` is the licence's own.
"""

from __future__ import annotations

import calendar
import csv
import html
import io
import threading
from collections.abc import Set as AbstractSet
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from xml.sax.saxutils import escape as xml_escape

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from msgspec.structs import asdict
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Flowable, Image, Paragraph, SimpleDocTemplate, Spacer, Table
from reportlab.platypus.tables import TableStyle

from contracts.ledger import Statement
from contracts.money import MICROS_PER_UNIT, MINOR_UNITS, check_currency

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

# One line per group of columns rather than one name per line.
CSV_HEADER = (
    "owner_id", "period", "currency", "section", "key", "label", "dataset_id", "licence_id",
    "hit_count", "gross_micros", "owner_micros", "platform_micros", "value", "payout_state",
    "transfer_id", "price_per_hit_micros", "owner_share_bps", "snippet_cap_chars", "attribution",
)  # fmt: skip
TOP_DOCUMENTS = 20
# English on purpose: calendar.month_name follows the process locale, and output must not.
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")  # fmt: skip
# rcParams are process-global and not thread-safe, hence the lock. svg.hashsalt makes the SVG's
# element ids repeatable; svg.fonttype "none" keeps chart text as text (smaller, selectable).
_MPL_LOCK = threading.Lock()
_MPL_RC: dict[RcKeyType, Any] = {
    "svg.hashsalt": "fairshare-statement",
    "svg.fonttype": "none",
    "font.size": 7.0,
    "font.family": "DejaVu Sans",
    "axes.linewidth": 0.6,
}
_CHART_INCHES = (7.3, 1.7)
_BAR, _LINE, _WARN_BG = "#94a3b8", "#b45309", "#fef3c7"
_PAGE_W = A4[0] - 24 * mm  # content width inside 12 mm margins
_PROVISIONAL = "Provisional: this period is still open, so these figures will change."


def format_units(micros: int, currency: str) -> str:
    """Exact decimal text for `micros`: at least the currency's minor-unit digits, more only when
    sub-minor micros exist (1_333_000 USD -> "1.333", JPY 5_000_000 -> "5"); InvalidInput for a
    currency we do not settle in, since its minor units would be a guess."""
    minor = MINOR_UNITS[check_currency(currency)]
    units, frac = divmod(abs(micros), MICROS_PER_UNIT)
    digits = f"{frac:06d}".rstrip("0").ljust(minor, "0")
    return ("-" if micros < 0 else "") + f"{units:,}" + (f".{digits}" if digits else "")


# The region of hits recorded before the processing region was kept.
UNRECORDED = "unrecorded"


def statement_csv(s: Statement) -> str:
    """The whole statement as one CSV table (columns and sections in the module docstring)."""
    out = io.StringIO()
    # extrasaction="ignore": line structs are written whole; fields without a column drop out.
    writer = csv.DictWriter(out, CSV_HEADER, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    base = {"owner_id": s.owner_id, "period": s.period, "currency": s.currency}
    summary = {
        "hit_count": s.hit_count,
        "gross": s.gross_micros,
        "owner": s.owner_micros,
        "platform": s.platform_micros,
        "reversal_count": s.reversal_count,
        "reversals": s.reversed_owner_micros,
        "net": s.net_owner_micros,
        "carried_in": s.carried_in_micros,
        "payable": s.payable_micros,
        "payout": s.payout_micros,
        "carried_forward": s.carried_forward_micros,
        "closed": int(s.closed),
    }
    for key, value in summary.items():
        row: dict[str, object] = {"section": "summary", "key": key, "value": value}
        if key == "payout" and s.payout is not None:
            p = s.payout
            row |= {"payout_state": p.state, "transfer_id": p.transfer_id, "label": p.failure}
        writer.writerow(base | row)
    lines = (
        [("dataset", d.dataset_id, d.dataset_name, d) for d in s.datasets]
        + [("region", r.region or UNRECORDED, "", r) for r in s.regions]
        + [("document", d.document_id, d.title, d) for d in s.documents]
        + [("day", d.day, "", d) for d in s.days]
        + [("licence", t.licence_id, t.name, t) for t in s.licences]
    )
    for section, key, label, line in lines:
        writer.writerow(base | {"section": section, "key": key, "label": label} | asdict(line))
    return out.getvalue()


# The page: built once as plain text, then drawn as HTML or PDF so both say the same thing.


class _Table(NamedTuple):
    title: str
    head: list[str]
    rows: list[list[str]]
    numeric: AbstractSet[int]  # right-aligned columns
    widths_mm: list[float]  # column widths on both pages; they add up to 186 mm, A4 less margins
    empty: str = "None."
    total: bool = False  # the last row is a total
    clip: AbstractSet[int] = frozenset()  # columns kept to one line, cut to fit (long titles)


def _percent(bps: int) -> str:
    whole, frac = divmod(bps, 100)
    return f"{whole}" + (f".{frac:02d}".rstrip("0") if frac else "") + "%"


def _month(period: str) -> str:
    return f"{_MONTHS[int(period[5:7]) - 1]} {period[:4]}"


def _heading(s: Statement) -> str:
    last = calendar.monthrange(int(s.period[:4]), int(s.period[5:7]))[1]
    return (
        f"Statement for {s.period} (1–{last} {_month(s.period)}, UTC) · owner {s.owner_id} · "
        f"amounts in {s.currency}"
    )


def _fit(text: str, width: float, font: str, size: float) -> str:
    """`text` on one line, cut with an ellipsis where it is wider than `width` points."""
    flat = " ".join(text.split())
    if pdfmetrics.stringWidth(flat, font, size) <= width:
        return flat
    flat = flat[:300]  # no title fits more than this on a line; bounds the loop below
    while flat and pdfmetrics.stringWidth(flat + "…", font, size) > width:
        flat = flat[:-1]
    return flat.rstrip() + "…"


def _payout_note(s: Statement) -> str:
    p = s.payout
    if p is None:
        return "no payout for this period"
    parts = [p.state + (f" (attempt {p.attempt})" if p.attempt > 1 else "")]
    if p.transfer_id:
        parts.append(f"transfer {p.transfer_id}")
    if p.state == "failed":
        amount = format_units(p.amount_micros, p.currency)
        parts.append(f"{amount} not paid: {p.failure or 'no reason given'}")
    return ", ".join(parts)


def _tables(s: Statement) -> list[_Table]:
    """Summary, datasets, top documents and licence terms, every cell already formatted."""

    def m(micros: int) -> str:
        return format_units(micros, s.currency)

    names = {d.dataset_id: d.dataset_name for d in s.datasets}
    # Two blocks side by side, what was earned and what is owed: half the height of one list.
    earned = [
        ["Hits", f"{s.hit_count:,}", "passages delivered"],
        ["Gross", m(s.gross_micros), "paid by customers"],
        ["Owner share", m(s.owner_micros), f"platform kept {m(s.platform_micros)}"],
        ["Reversals", m(-s.reversed_owner_micros), f"{s.reversal_count:,} reversed"],
        ["Net earnings", m(s.net_owner_micros), "owner share − reversals"],
    ]
    owed = [
        ["Carried in", m(s.carried_in_micros), "owed from earlier periods"],
        ["Payable", m(s.payable_micros), "carried in + net earnings"],
        ["Payout", m(s.payout_micros), _payout_note(s)],
        ["Carried forward", m(s.carried_forward_micros), "payable − payout, owed next"],
        ["", "", ""],
    ]
    summary = [a + b for a, b in zip(earned, owed, strict=True)]
    datasets = [
        [
            f"{d.dataset_name} ({d.dataset_id})",
            d.licence_id,
            f"{d.hit_count:,}",
            *map(m, (d.gross_micros, d.owner_micros, d.platform_micros)),
        ]
        for d in s.datasets
    ]
    if datasets:
        totals = map(m, (s.gross_micros, s.owner_micros, s.platform_micros))
        datasets.append(["Total", "", f"{s.hit_count:,}", *totals])
    regions = [
        [
            r.region or UNRECORDED,
            f"{r.hit_count:,}",
            *map(m, (r.gross_micros, r.owner_micros, r.platform_micros)),
        ]
        for r in s.regions
    ]
    documents = [
        [
            str(i),
            d.title,
            names.get(d.dataset_id, d.dataset_id),
            f"{d.hit_count:,}",
            *map(m, (d.gross_micros, d.owner_micros)),
        ]
        for i, d in enumerate(s.documents[:TOP_DOCUMENTS], 1)
    ]
    terms = [
        [
            f"{t.name} ({t.licence_id})",
            f"{format_units(t.price_per_hit_micros, t.currency)} {t.currency}",
            _percent(t.owner_share_bps),
            f"{t.snippet_cap_chars:,} chars",
            t.attribution,
        ]
        for t in s.licences
    ]
    money = ["Gross", "Owner", "Platform"]
    return [
        _Table(
            "Summary",
            ["Earned", s.currency, "", "Owed", s.currency, ""],
            summary,
            {1, 4},
            [22, 26, 45, 24, 26, 43],
        ),
        _Table(
            f"By dataset ({s.currency})",
            ["Dataset", "Licence", "Hits", *money],
            datasets,
            {2, 3, 4, 5},
            [80, 24, 16, 22, 22, 22],
            empty="No hits in this period.",
            total=True,
        ),
        _Table(
            f"By processing region ({s.currency})",
            ["Region", "Hits", *money],
            regions,
            {1, 2, 3, 4},
            [80, 16, 30, 30, 30],
            empty="No hits in this period.",
        ),
        _Table(
            f"Top documents by gross ({s.currency})",
            ["#", "Document", "Dataset", "Hits", *money[:2]],
            documents,
            {0, 3, 4, 5},
            [7, 93, 36, 12, 19, 19],
            empty="No documents were delivered in this period.",
            clip={1, 2},
        ),
        _Table(
            "Licence terms applied",
            ["Licence", "Price per hit", "Owner share", "Snippet cap", "Attribution"],
            terms,
            {1, 2, 3},
            [44, 26, 20, 20, 76],
            empty="No hits, so no licence terms applied.",
        ),
    ]


def _footnote(s: Statement) -> str:
    minor = MINOR_UNITS[check_currency(s.currency)]
    unit = f"whole multiples of {format_units(10 ** (6 - minor), s.currency)} {s.currency}"
    carried = format_units(s.carried_forward_micros, s.currency)
    return (
        f"Amounts are exact: digits beyond {s.currency}'s {minor} decimal places appear only where "
        f"they exist. Payouts are made in {unit}; the fraction below that, and any balance under "
        "the payout minimum or from a payout that did not go through, is carried forward and owed "
        f"next period ({carried} {s.currency} this time). Carried in is what earlier periods "
        "carried forward."
    )


def _chart(s: Statement, fmt: str) -> bytes | None:
    """Daily hits (bars, left axis) and owner revenue (line, right axis) as SVG or PNG bytes;
    None when no day had hits, where an empty chart would only take space."""
    if not any(d.hit_count for d in s.days):
        return None
    x = list(range(len(s.days)))
    with _MPL_LOCK, matplotlib.rc_context(_MPL_RC):
        fig = Figure(figsize=_CHART_INCHES, layout="constrained")
        try:
            ax = fig.add_subplot()
            ax.bar(x, [d.hit_count for d in s.days], color=_BAR, width=0.7, label="Hits")
            ax.set_ylabel("Hits")
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xticks(x, labels=[d.day[-2:] for d in s.days], fontsize=5.5)
            ax.set_xlim(-0.6, len(x) - 0.4)
            ax.set_xlabel(f"Day of {_month(s.period)} (UTC)")
            rev = ax.twinx()
            revenue = f"Owner revenue ({s.currency})"
            owner_units = [d.owner_micros / MICROS_PER_UNIT for d in s.days]  # coordinates only
            rev.plot(x, owner_units, color=_LINE, marker="o", markersize=2, label=revenue)
            rev.set_ylim(0, max(owner_units) * 1.1 or 1)
            rev.set_ylabel(revenue)
            for a in (ax, rev):
                a.spines["top"].set_visible(False)
            # Above the axes, so it can never hide a bar or a point.
            fig.legend(loc="outside upper left", ncols=2, frameon=False, fontsize=6.5)
            buf = io.BytesIO()
            # No Date in the SVG metadata: the bytes must not change between renderings.
            fig.savefig(buf, format=fmt, dpi=150, metadata={"Date": None} if fmt == "svg" else {})
            return buf.getvalue()
        finally:
            fig.clear()  # break the figure's reference cycles now rather than at the next GC


_CSS = """
@page { size: A4; margin: 12mm; }
body { font: 8.5pt/1.3 "DejaVu Sans", system-ui, sans-serif; color: #111; margin: 0 auto;
  max-width: 186mm; }
h1 { font-size: 13pt; margin: 0; }
h2 { font-size: 9.5pt; margin: 7pt 0 2pt; border-bottom: .6pt solid #888; }
p { margin: 2pt 0; }
.banner { border: 1.2pt solid #b45309; background: #fef3c7; padding: 3pt 6pt; font-weight: bold;
  print-color-adjust: exact; -webkit-print-color-adjust: exact; }
table { border-collapse: collapse; width: 100%; font-size: 7pt; table-layout: fixed; }
th, td { padding: .5pt 4pt; border-bottom: .4pt solid #ccc; text-align: left; vertical-align: top; }
th { border-bottom-color: #888; }
.clip { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.total td { font-weight: bold; }
.note { color: #555; }
figure { margin: 0; }
figure svg { width: 100%; height: auto; display: block; }
footer { font-size: 6.5pt; color: #444; margin-top: 6pt; }
tr { break-inside: avoid; }
"""


def _html_table(t: _Table) -> str:
    def td(i: int, text: str, tag: str) -> str:
        attrs = " class=n" * (i in t.numeric)
        if i in t.clip and tag == "td":  # full text on hover; the CSV has it too
            attrs = f' class=clip title="{html.escape(text)}"'
        return f"<{tag}{attrs}>{html.escape(text)}</{tag}>"

    def tr(cells: list[str], tag: str, cls: str = "") -> str:
        return f"<tr{cls}>{''.join(td(i, c, tag) for i, c in enumerate(cells))}</tr>"

    if not t.rows:
        return f"<p class=note>{html.escape(t.empty)}</p>"
    last = len(t.rows) - 1
    body = "\n".join(
        tr(r, "td", " class=total" * (t.total and i == last)) for i, r in enumerate(t.rows)
    )
    # Fixed layout with the PDF's widths: clipped cells need it, and both pages then match.
    cols = "".join(f'<col style="width:{w / sum(t.widths_mm):.2%}">' for w in t.widths_mm)
    head = f"<colgroup>{cols}</colgroup>\n<thead>{tr(t.head, 'th')}</thead>"
    return f"<table>\n{head}\n<tbody>\n{body}\n</tbody>\n</table>"


def statement_html(s: Statement) -> str:
    """One self-contained, printable HTML page (no scripts, no external assets) that fits A4."""
    e = html.escape
    tables = _tables(s)
    svg = _chart(s, "svg")
    chart = "<p class=note>No hits in this period, so no daily chart.</p>"
    if svg is not None:
        text = svg.decode()
        # Inline from <svg on: the XML declaration and DOCTYPE are not allowed inside HTML.
        label = 'role=img aria-label="Daily hits and owner revenue"'
        chart = f"<figure {label}>{text[text.index('<svg') :]}</figure>"
    sections = [f"<h2>{e(t.title)}</h2>\n{_html_table(t)}" for t in tables]
    sections.insert(1, f"<h2>Daily hits and owner revenue</h2>\n{chart}")
    banner = [f"<p class=banner>{_PROVISIONAL}</p>"] if not s.closed else []
    body = "\n".join([*banner, *sections])
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Statement {e(s.period)} — {e(s.owner_name)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{e(s.owner_name)}</h1>
<p>{e(_heading(s))}</p>
{body}
<footer>{e(_footnote(s))}</footer>
</body>
</html>
"""


@cache
def _pdf_fonts() -> tuple[str, str]:
    """DejaVu Sans from matplotlib's own data: always installed, embedded in the PDF, and far
    wider in script coverage than the built-in Helvetica (Latin-1 only)."""
    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    pdfmetrics.registerFont(TTFont("FairshareSans", str(ttf / "DejaVuSans.ttf")))
    pdfmetrics.registerFont(TTFont("FairshareSans-Bold", str(ttf / "DejaVuSans-Bold.ttf")))
    return "FairshareSans", "FairshareSans-Bold"


def _para(text: str, size: float = 7, bold: bool = False, color: str = "#111111") -> Paragraph:
    """Paragraph parses mini-markup, so plain (user) text is escaped here."""
    regular, heavy = _pdf_fonts()
    font = heavy if bold else regular
    style = ParagraphStyle(
        "p", fontName=font, fontSize=size, leading=size * 1.2, textColor=colors.HexColor(color)
    )
    return Paragraph(xml_escape(" ".join(text.split())), style)


def _pdf_table(t: _Table) -> Flowable:
    if not t.rows:
        return _para(t.empty, color="#555555")
    regular, heavy = _pdf_fonts()
    rows = [t.head, *t.rows]

    def bold(r: int) -> bool:
        return r == 0 or (t.total and r == len(rows) - 1)

    widths = [w * mm for w in t.widths_mm]

    # Text wraps in a Paragraph; numbers and the clipped column stay one-line strings.
    def cell(r: int, i: int, text: str) -> Flowable | str:
        if i in t.numeric:
            return text
        if i in t.clip and r > 0:
            return _fit(text, widths[i] - 12, regular, 7)  # 12: the cell's left+right padding
        return _para(text, bold=bold(r))

    cells = [[cell(r, i, c) for i, c in enumerate(row)] for r, row in enumerate(rows)]
    style: list[tuple[Any, ...]] = [
        ("FONT", (0, 0), (-1, -1), regular, 7),
        ("FONT", (0, 0), (-1, 0), heavy, 7),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 0.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
        ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.grey),
        ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.lightgrey),
        *[("ALIGN", (i, 0), (i, -1), "RIGHT") for i in t.numeric],
    ]
    if t.total:
        style.append(("FONT", (0, -1), (-1, -1), heavy, 7))
    return Table(cells, colWidths=widths, style=TableStyle(style), hAlign="LEFT", repeatRows=1)


def statement_pdf(s: Statement) -> bytes:
    """The HTML page's content as a PDF: one A4 page for a normal month (≤ 31 days, top 20
    documents, a handful of datasets); longer statements flow onto further pages. Long document
    titles are cut to one line."""
    story: list[Flowable] = [
        _para(s.owner_name, size=14, bold=True),
        _para(_heading(s), size=8, color="#444444"),
    ]
    if not s.closed:
        banner = Table([[_para(_PROVISIONAL, size=8, bold=True)]], colWidths=[_PAGE_W])
        line, fill = colors.HexColor(_LINE), colors.HexColor(_WARN_BG)
        box = [("BOX", (0, 0), (-1, -1), 1, line), ("BACKGROUND", (0, 0), (-1, -1), fill)]
        banner.setStyle(TableStyle(box))
        story += [Spacer(1, 2 * mm), banner]
    png = _chart(s, "png")
    chart: Flowable = _para("No hits in this period, so no daily chart.", color="#555555")
    if png is not None:
        height = _PAGE_W * _CHART_INCHES[1] / _CHART_INCHES[0]
        chart = Image(io.BytesIO(png), width=_PAGE_W, height=height)
    sections = [(t.title, _pdf_table(t)) for t in _tables(s)]
    sections.insert(1, ("Daily hits and owner revenue", chart))
    for title, flowable in sections:
        story += [Spacer(1, 2 * mm), _para(title, size=9, bold=True), Spacer(1, 0.8 * mm), flowable]
    story += [Spacer(1, 3 * mm), _para(_footnote(s), size=6.5, color="#444444")]
    buf = io.BytesIO()
    # invariant=1: no creation date or random document id, so equal statements give equal bytes.
    margins = {f"{side}Margin": 12 * mm for side in ("left", "right", "top", "bottom")}
    title = f"Statement {s.period} — {s.owner_name}"
    doc = SimpleDocTemplate(
        buf, pagesize=A4, invariant=1, title=title, author="Fairshare", **margins
    )
    doc.build(story)
    return buf.getvalue()
