"""The report as one self-contained HTML file with charts (matplotlib, inline SVG)."""

from __future__ import annotations

import ast
import inspect
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.browser import needs_chromium, open_browser
from tests.support.desk import demo_db, iso
from triage.core.sla import tracking as core_tracking
from triage.desk import objectives, report, series
from triage.service import tracking
from triage.store.desk import queries
from triage.store.desk.readonly import connect
from triage.store.sqlite import Store

NOW = datetime(2026, 3, 11, 14, 0, tzinfo=UTC)
SOW = objectives.Objective(
    "connectwise-helpdesk", 70.0, "70% of email and PSA tickets are answered in 2 hours or less"
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_db(tmp_path_factory.mktemp("demo"), now=NOW)


def helpdesk_db(folder: Path) -> Path:
    """Ten P2 tickets on the help-desk policy over two days: 6 answered in time, 3 late and
    one unanswered past due (7 of 10 late or breached at Acme, 0 at Globex), 4 filtered."""
    db = folder / "triage.db"
    s = Store(db)
    s.close()
    conn = sqlite3.connect(db)
    for n in range(10):
        created = NOW - timedelta(days=1 if n < 5 else 0, hours=4)
        due = created + timedelta(hours=2)
        answered = None if n == 9 else created + timedelta(hours=1 if n < 6 else 3)
        conn.execute(
            "INSERT INTO tickets (number, status, requester, created_at, priority, level, policy,"
            " plan, response_due, first_response_at, company)"
            " VALUES (?, 'open', 'a@example.com', ?, 'P2', 2, 'connectwise-helpdesk', '24x7', ?, ?, ?)",
            (
                f"T-{n + 1:06d}",
                iso(created),
                iso(due),
                answered and iso(answered),
                "Globex" if n < 3 else "Acme",
            ),
        )
    for reason in ("x-loop", "x-loop", "list-id", "spam-flag"):
        conn.execute(
            "INSERT INTO messages (message_key, action, reason, received_at)"
            " VALUES (?, 'filtered', ?, ?)",
            (f"k-{reason}-{conn.total_changes}", reason, iso(NOW - timedelta(hours=1))),
        )
    conn.commit()
    conn.close()
    return db


def test_the_read_only_report_is_the_report_the_cli_prints(demo):
    conn = connect(demo.path)
    got = report.read_report(conn, NOW)
    conn.close()
    store = Store(demo.path)
    try:
        assert got == tracking.report(store, NOW)
    finally:
        store.close()


def test_attainment_is_measured_against_the_sows_70_percent(tmp_path: Path):
    db = helpdesk_db(tmp_path)
    page = report.html(db, NOW, targets={"connectwise-helpdesk": SOW})
    attainment = page[page.index('id="attainment"') : page.index('id="per-day"')]
    # 6 within of 10 decided (3 late, 1 breached): 60 %, below the objective.
    assert (
        "<td>connectwise-helpdesk</td><td>P2</td><td>10</td><td>6</td><td>60 % (missed)</td><td>70 %</td>"
        in attainment
    )
    assert f"“{SOW.seed}”" in attainment
    assert "objective 70 %" in attainment  # the line's label, as text in the SVG
    breaches = page[page.index('id="breaches"') : page.index('id="filtered"')]
    assert "<td>Acme</td><td>4</td>" in breaches  # 3 late and 1 breached, all at Acme
    assert "Globex" not in breaches
    filtered = page[page.index('id="filtered"') :]
    assert "<td>x-loop</td><td>2</td>" in filtered


def test_a_policy_with_no_stated_share_is_held_to_every_ticket(tmp_path: Path):
    db = helpdesk_db(tmp_path)
    page = report.html(db, NOW, targets={})
    assert "<td>60 % (missed)</td><td>100 %</td>" in page
    assert "every ticket (no share stated)" in page


def test_tickets_per_day_by_priority_and_since(tmp_path: Path):
    db = helpdesk_db(tmp_path)
    conn = connect(db)
    rep = report.read_report(conn, NOW)
    values = series.read(conn, rep, {})
    assert values.days == (NOW.date() - timedelta(days=1), NOW.date())
    assert values.per_day == {"P2": (5, 5)}
    since = datetime.combine(NOW.date(), datetime.min.time(), UTC)
    rep = report.read_report(conn, NOW, since)
    values = series.read(conn, rep, {})
    conn.close()
    assert (values.days, values.per_day) == ((NOW.date(),), {"P2": (5,)})
    assert rep.total.tickets == 5


def test_days_are_counted_in_the_desks_time_zone(tmp_path: Path):
    db = helpdesk_db(tmp_path)
    conn = connect(db)
    rep = report.read_report(conn, NOW)
    # 10:00 UTC is 23:00 the same day in Auckland (UTC+13 in March): the days shift by one.
    values = series.read(conn, rep, {}, timezone="Pacific/Auckland")
    conn.close()
    assert values.days[-1] == NOW.date() + timedelta(days=1)


def test_the_file_fetches_nothing_and_runs_no_script(demo):
    page = report.html(demo.path, NOW)
    assert page.count("<svg") == 4
    assert "<script" not in page.lower()
    assert not re.search(r"\b(src|href)=\"(?!#)", page)  # only links inside the file
    urls = set(re.findall(r"https?://[^\"' )]+", page))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    ids = re.findall(r'id="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # four figures, no id shared between them


def test_an_empty_database_still_gives_a_whole_report(tmp_path: Path):
    db = tmp_path / "triage.db"
    Store(db).close()
    page = report.html(db, NOW)
    assert page.count("<svg") == 4
    assert "no tickets" in page and "no breaches" in page and "no mail filtered" in page


@needs_chromium
def test_the_charts_render_in_chromium(tmp_path: Path):
    db = helpdesk_db(tmp_path)
    target = tmp_path / "report.html"
    target.write_text(report.html(db, NOW, targets={"connectwise-helpdesk": SOW}), "utf-8")
    with open_browser(tmp_path) as browser:
        page = browser.new_page()
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url))
        page.goto(target.as_uri())
        charts = page.evaluate(
            """() => [...document.querySelectorAll('figure.chart')].map(f => {
                const svg = f.querySelector('svg');
                const box = svg.getBoundingClientRect();
                return {name: f.dataset.chart, width: box.width, height: box.height,
                        shapes: svg.querySelectorAll('path, rect, use').length,
                        text: svg.textContent};
            })"""
        )
        assert [c["name"] for c in charts] == ["attainment", "per-day", "breaches", "filtered"]
        for c in charts:
            assert c["width"] > 300 and c["height"] > 80, c
            assert c["shapes"] > 5, c
        assert "objective 70 %" in charts[0]["text"]
        assert "60 % of 10" in charts[0]["text"]  # the bar's label
        assert "Acme" in charts[2]["text"] and "x-loop" in charts[3]["text"]
        # A person sees the heading and the first chart without scrolling past a blank page.
        assert page.get_by_role(
            "heading", name="First response within target, per priority"
        ).is_visible()
        assert asked == [target.as_uri()]  # nothing fetched but the file itself


@pytest.mark.parametrize("function", ["tickets", "tickets_since", "unanswered_open"])
def test_the_ticket_columns_written_out_are_trackings(function: str):
    """The desk's SQL is literal text, so it writes tracking.COLUMNS out; from_row reads
    them by position."""
    source = inspect.getsource(getattr(queries, function))
    tree = ast.parse(source)
    texts = [
        " ".join(node.value.split())
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]
    joined = " ".join(texts)  # the statement is written over several adjacent literals
    written = " ".join(core_tracking.COLUMNS.split())
    assert f"SELECT {written} " in joined or f"SELECT {written}," in joined
