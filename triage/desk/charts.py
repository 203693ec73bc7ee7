"""The report as one self-contained HTML file: charts drawn by matplotlib as inline SVG.

Pure: `Report` and `Series` values in, a string of HTML out; no clock, no database, no
network. Why matplotlib to SVG: the file opens anywhere (a mail attachment, a browser with no
network, a printer) because it holds no script and fetches nothing; text stays text (it can
be searched, read by a screen reader and checked by a test); and matplotlib is the most
widely kept plotting library for Python. Each chart is followed by its numbers in a table.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from datetime import datetime

import matplotlib
from matplotlib.figure import Figure

from triage.core.sla import tracking
from triage.desk.series import Series

TOP = 15  # companies and filter reasons drawn; the rest are summed as "other"
OK_COLOUR, LATE_COLOUR, LINE_COLOUR = "#2e7d32", "#c62828", "#37474f"
# Colour-blind-safe (Okabe-Ito) for priorities, most urgent first.
PRIORITY_COLOURS = ("#d55e00", "#e69f00", "#0072b2", "#009e73", "#cc79a7", "#56b4e9", "#999999")

_STYLE = """
body { font-family: "DejaVu Sans", Verdana, sans-serif; margin: 2em auto; max-width: 60em;
       color: #212121; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; }
figure { margin: 1em 0; } figure svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.miss { color: #c62828; font-weight: bold; } .met { color: #2e7d32; }
"""


def html_report(report: tracking.Report, series: Series, title: str = "triage report") -> str:
    """The whole report: the response table, then the four charts with their numbers."""
    span = f"tickets created since {_when(report.since)}" if report.since else "all tickets stored"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p>At {_when(report.now)}; {span}; days in {_e(series.timezone)}.</p>",
        _summary_table(report),
        _section(
            "attainment",
            "First response within target, per priority",
            _attainment_svg(series),
            "Share of tickets answered within their response target, among those whose"
            " outcome is known (answered, or unanswered past the deadline), against the"
            " policy's objective.",
            _attainment_table(series),
        ),
        _section(
            "per-day",
            "Tickets per day by priority",
            _per_day_svg(series),
            "Tickets opened each day"
            + (f" (the {series.cut_days} earliest days left out)" if series.cut_days else "")
            + ".",
            _table(
                ["day", *series.priorities],
                [
                    [d.isoformat(), *(series.per_day[p][i] for p in series.priorities)]
                    for i, d in enumerate(series.days)
                    if any(series.per_day[p][i] for p in series.priorities)
                ],
            ),
        ),
        _section(
            "breaches",
            "Breaches per company",
            _barh_svg(
                "breaches", _top(series.breaches), LATE_COLOUR, "tickets breached", "no breaches"
            ),
            "Tickets answered after their deadline, or still unanswered past it.",
            _table(["company", "tickets breached"], [list(kv) for kv in series.breaches]),
        ),
        _section(
            "filtered",
            "Filtered mail by reason",
            _barh_svg(
                "filtered", _top(series.filtered), LINE_COLOUR, "messages", "no mail filtered"
            ),
            "Mail no person wrote (bounces, auto-replies, bulk and spam), by the rule that"
            " filtered it.",
            _table(["reason", "messages"], [list(kv) for kv in series.filtered]),
        ),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- HTML pieces


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _when(value: datetime | None) -> str:
    return tracking.iso(value) if value else ""


def _section(ident: str, heading: str, svg: str, caption: str, table: str) -> str:
    return (
        f'<section id="{ident}"><h2>{_e(heading)}</h2>'
        f'<figure class="chart" data-chart="{ident}">{svg}'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
        f"<details><summary>The numbers</summary>{table}</details></section>"
    )


def _table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    if not rows:
        return "<p>None.</p>"
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:g} %"


def _summary_table(report: tracking.Report) -> str:
    head = ["priority", "tickets", "within", "late", "breached (open)", "pending", "no target"]
    head.append("within target")
    rows = [
        [
            r.priority,
            r.tickets,
            r.within,
            r.late,
            r.breached,
            r.pending,
            r.no_target,
            _percent(r.percent),
        ]
        for r in [*report.rows, report.total]
    ]
    return '<section id="summary"><h2>First responses</h2>' + _table(head, rows) + "</section>"


def _attainment_table(series: Series) -> str:
    rows = []
    for a in series.attainment:
        for r in a.rows:
            met = r.percent is not None and r.percent >= a.objective.percent
            mark = "" if r.percent is None else (" (met)" if met else " (missed)")
            rows.append(
                [
                    a.policy,
                    r.priority,
                    r.decided,
                    r.within,
                    _percent(r.percent) + mark,
                    f"{a.objective.percent:g} %",
                ]
            )
    sources = "".join(
        f"<p>{_e(a.policy)}: “{_e(a.objective.seed)}” ({_e(a.objective.source)})</p>"
        for a in series.attainment
        if a.objective.stated
    )
    return (
        _table(["policy", "priority", "known", "within", "within target", "objective"], rows)
        + sources
    )


# --------------------------------------------------------------------------- charts (SVG)


def _svg(fig: Figure, name: str) -> str:
    """The figure as an inline <svg> element: no XML prolog, ids unique to this chart."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"triage-{name}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    # The RDF block names matplotlib and Dublin Core namespaces: nothing a reader needs.
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, count=1, flags=re.DOTALL)
    # matplotlib numbers its element ids per figure; four figures on one page would share
    # them (and a clip path could be taken from another chart). Prefix each with the chart.
    text = re.sub(r'id="([^"]+)"', rf'id="{name}-\1"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{name}-\1)", text)
    text = re.sub(r'xlink:href="#([^"]+)"', rf'xlink:href="#{name}-\1"', text)
    return text.replace("<svg ", f'<svg role="img" aria-label="{_e(name)}" ', 1)


def _figure(width: float = 8.0, height: float = 3.6) -> Figure:
    fig = Figure(figsize=(width, height))
    fig.set_layout_engine("constrained")
    return fig


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color="#757575")
    ax.set_xticks([])
    ax.set_yticks([])


def _attainment_svg(series: Series) -> str:
    groups = [a for a in series.attainment if a.rows] or []
    fig = _figure(8.0, 3.2 * max(1, len(groups)))
    axes = fig.subplots(max(1, len(groups)), 1, squeeze=False)[:, 0]
    if not groups:
        _empty(axes[0], "no tickets")
        return _svg(fig, "attainment")
    for ax, a in zip(axes, groups, strict=False):
        labels = [r.priority for r in a.rows]
        values = [r.percent or 0.0 for r in a.rows]
        colours = [
            OK_COLOUR if r.percent is not None and r.percent >= a.objective.percent else LATE_COLOUR
            for r in a.rows
        ]
        bars = ax.bar(labels, values, color=colours, width=0.6)
        for bar, r in zip(bars, a.rows, strict=True):
            text = "no outcome yet" if r.percent is None else f"{r.percent:g} % of {r.decided}"
            ax.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
        ax.axhline(a.objective.percent, color=LINE_COLOUR, linestyle="--", linewidth=1.2)
        ax.text(
            1.0,
            a.objective.percent,
            f" {a.objective.label()}",
            transform=ax.get_yaxis_transform(),
            va="bottom",
            ha="right",
            fontsize=8,
            color=LINE_COLOUR,
        )
        ax.set_ylim(0, 110)
        ax.set_ylabel("% within target")
        ax.set_title(f"policy {a.policy}", fontsize=10, loc="left")
        ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig, "attainment")


def _per_day_svg(series: Series) -> str:
    fig = _figure()
    ax = fig.subplots()
    if not series.days or not any(sum(v) for v in series.per_day.values()):
        _empty(ax, "no tickets")
        return _svg(fig, "per-day")
    xs = list(range(len(series.days)))
    bottom = [0] * len(xs)
    for i, p in enumerate(series.priorities):
        counts = series.per_day[p]
        ax.bar(
            xs,
            counts,
            bottom=bottom,
            label=p,
            color=PRIORITY_COLOURS[i % len(PRIORITY_COLOURS)],
            width=0.8,
        )
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    step = max(1, len(xs) // 12)
    ticks = xs[::step]
    ax.set_xticks(ticks, [series.days[i].strftime("%d %b") for i in ticks], fontsize=8)
    ax.set_ylabel("tickets")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(title="priority", fontsize=8, title_fontsize=8, loc="upper left", frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig, "per-day")


def _top(items: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    if len(items) <= TOP:
        return list(items)
    rest = sum(n for _, n in items[TOP - 1 :])
    return [*items[: TOP - 1], (f"other ({len(items) - TOP + 1})", rest)]


def _barh_svg(
    name: str, items: Sequence[tuple[str, int]], colour: str, unit: str, none: str
) -> str:
    fig = _figure(8.0, max(1.6, 0.32 * len(items) + 0.8))
    ax = fig.subplots()
    if not items:
        _empty(ax, none)
        return _svg(fig, name)
    labels = [label for label, _ in items][::-1]
    values = [n for _, n in items][::-1]
    bars = ax.barh(labels, values, color=colour, height=0.6)
    ax.bar_label(bars, padding=3, fontsize=8)
    ax.set_xlabel(unit)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.tick_params(axis="y", labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig, name)
