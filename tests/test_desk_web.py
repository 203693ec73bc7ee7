"""The technicians' read-only page (Datasette): what a person sees on the queue, a ticket,
search, the filtered mail and the review list; checked in-process and in headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.browser import needs_chromium, open_browser
from tests.support.desk import demo_db, web_server
from triage.core import sla
from triage.desk import web

NOW = datetime(2026, 3, 11, 14, 0, tzinfo=UTC)  # a Wednesday


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_db(tmp_path_factory.mktemp("demo"), now=NOW)


@pytest.fixture(scope="module")
def policies():
    return sla.load_policies(ROOT / "rules" / "sla")


def get(ds, path: str):
    async def go():
        return await ds.client.get(path)

    return asyncio.run(go())


def rows(ds, path: str) -> list[dict]:
    sep = "&" if "?" in path else "?"
    response = get(ds, f"{path}{sep}_shape=array")
    assert response.status_code == 200, response.text
    return response.json()


def due_order(db: Path) -> list[str]:
    """Unanswered open tickets with a deadline, soonest first: the queue's order."""
    conn = sqlite3.connect(db)
    try:
        return [
            n
            for (n,) in conn.execute(
                "SELECT number FROM tickets WHERE first_response_at IS NULL"
                " AND response_due IS NOT NULL ORDER BY julianday(response_due), id"
            )
        ]
    finally:
        conn.close()


def test_the_queue_is_in_due_order_with_the_breached_ticket_first_and_marked(demo):
    ds = web.app(demo.path, clock=lambda: NOW)
    queue = rows(ds, "/triage/queue.json")
    assert [r["ticket"] for r in queue] == due_order(demo.path)
    assert queue[0]["ticket"] == demo.breached
    assert [r["ticket"] for r in queue if r["state"] == "BREACHED"] == [demo.breached]
    assert queue[0]["time_left"] == "overdue 2h 00m"
    assert (queue[1]["ticket"], queue[1]["time_left"]) == ("T-000013", "2h 00m")  # P1, standard
    page = get(ds, "/triage/queue").text
    assert (
        '<span class="desk-breached" style="color:#b00020;font-weight:bold">⚠ BREACHED</span>'
        in page
    )
    assert page.count("desk-breached") == 1
    assert '<a class="desk-ticket" href="/triage/ticket?number=T-000001">T-000001</a>' in page


def test_the_queue_page_draws_one_page_with_the_count_and_the_way_to_the_next(demo, monkeypatch):
    """A busy desk's queue is drawn a page at a time (drawing 1,000 rows cost the page up to
    410 ms); the pages together are the whole queue in its order, and the JSON twin without
    `?page` still gives every row."""
    import re

    from triage.store.desk import canned

    monkeypatch.setattr(canned, "QUEUE_PAGE", 8)
    ds = web.app(demo.path, clock=lambda: NOW)
    every = [r["ticket"] for r in rows(ds, "/triage/queue.json")]
    assert len(every) == 22  # the demo's open tickets, all of them, as before

    def drawn(path: str) -> tuple[list[str], str]:
        page = get(ds, path).text
        numbers = re.findall(r'<a class="desk-ticket" href="[^"]+">(T-\d+)</a>', page)
        (pages, *_) = re.findall(r'<p class="desk-pages">(.*?)</p>', page, re.S)
        return numbers, " ".join(pages.split())

    first, said = drawn("/triage/queue")
    assert first == every[:8]
    assert said.startswith("Tickets 1–8 of 22 open")
    assert 'href="/triage/queue?page=2">next 8 →' in said and "previous" not in said
    second, said = drawn("/triage/queue?page=2")
    assert second == every[8:16]
    assert said.startswith("Tickets 9–16 of 22 open")
    assert 'href="/triage/queue?page=1">← previous 8' in said
    third, said = drawn("/triage/queue?page=3")
    assert third == every[16:]
    assert said.startswith("Tickets 17–22 of 22 open") and "next" not in said
    assert [r["ticket"] for r in rows(ds, "/triage/queue.json?page=2")] == every[8:16]
    # No such page: nothing drawn, and the way back to the last one.
    past, said = drawn("/triage/queue?page=9")
    assert past == [] and "past the last of 22 open tickets" in said
    assert 'href="/triage/queue?page=3">← previous' in said
    for wrong in ("0", "-1", "x", "9" * 30):  # not a page: the first one
        assert drawn(f"/triage/queue?page={wrong}")[0] == every[:8]
        assert [r["ticket"] for r in rows(ds, f"/triage/queue.json?page={wrong}")] == every


def test_an_answered_ticket_goes_to_the_end_and_a_closed_one_leaves(demo, tmp_path: Path):
    db = tmp_path / "triage.db"
    db.write_bytes(demo.path.read_bytes())
    conn = sqlite3.connect(db)
    conn.execute(
        "UPDATE tickets SET first_response_at = ? WHERE number = 'T-000013'",
        ("2026-03-11T14:10:00Z",),
    )
    conn.execute("UPDATE tickets SET status = 'closed' WHERE number = 'T-000018'")
    conn.commit()
    conn.close()
    queue = [r["ticket"] for r in rows(web.app(db, clock=lambda: NOW), "/triage/queue.json")]
    assert queue[-1] == "T-000013"
    assert "T-000018" not in queue
    assert len(queue) == 21


def test_at_risk_means_what_sla_check_means(demo, policies):
    later = NOW + timedelta(minutes=96)  # T-000013 (P1 standard, 2 h): 80 % used
    ds = web.app(demo.path, policies=policies, clock=lambda: later)
    risky = rows(ds, "/triage/at-risk.json")
    assert [(r["ticket"], r["percent_used"]) for r in risky] == [("T-000013", 80.0)]
    queue = rows(ds, "/triage/queue.json")
    assert [r["state"] for r in queue[:2]] == ["BREACHED", "at risk"]
    ticket = get(ds, "/triage/ticket?number=T-000013").text  # the same state on its own page
    assert '<p class="desk-state">\n    <span class="desk-at-risk"' in ticket
    # Without the rules no ticket is "at risk" (never a guess).
    assert rows(web.app(demo.path, clock=lambda: later), "/triage/at-risk.json") == []


def filtered_stored(demo) -> int:
    """Every message the replay filtered (all of them stored at NOW: the demo's today)."""
    with contextlib.closing(sqlite3.connect(demo.path)) as conn:
        return conn.execute("SELECT COUNT(*) FROM messages WHERE action = 'filtered'").fetchone()[0]


def test_filtered_today_lists_todays_filtered_mail_with_its_reason(demo):
    today = rows(web.app(demo.path, clock=lambda: NOW), "/triage/filtered-today.json")
    assert len(today) == filtered_stored(demo) > 50
    assert all(r["reason"] for r in today)
    assert sum(r["reason"] == "subject-auto-reply" for r in today) == 3
    tomorrow = NOW + timedelta(days=1)
    assert rows(web.app(demo.path, clock=lambda: tomorrow), "/triage/filtered-today.json") == []


def test_today_starts_at_midnight_in_the_desks_time_zone(demo):
    # At 02:00 UTC on the 12th the mail stored at 14:00 UTC on the 11th is yesterday's in UTC,
    # and today's in Auckland (UTC+13: stored at 03:00 and read at 15:00 on the 12th).
    later = NOW + timedelta(hours=12)
    utc = web.app(demo.path, clock=lambda: later)
    assert rows(utc, "/triage/filtered-today.json") == []
    auckland = web.app(demo.path, timezone="Pacific/Auckland", clock=lambda: later)
    assert len(rows(auckland, "/triage/filtered-today.json")) == filtered_stored(demo)


def test_the_review_list_gives_the_command_that_releases_each(demo):
    held = rows(web.app(demo.path, clock=lambda: NOW), "/triage/review.json")
    assert sorted(r["reason"] for r in held) == ["sow-from-info", "sow-from-microsoft-com"]
    assert all(r["release"] == f"triage review release {r['id']}" for r in held)


def test_a_ticket_page_shows_the_ticket_why_and_its_thread_in_order(demo):
    ds = web.app(demo.path, clock=lambda: NOW)
    thread = rows(ds, "/triage/ticket.json?number=t-1")  # typed as a person would
    assert thread[0]["entry"] == "message" and thread[0]["subject"] == "Severity1"
    assert [r["entry"] for r in thread[1:]] == ["created", "auto_reply_queued"]
    assert [r["at"] for r in thread] == sorted(r["at"] for r in thread)
    page = get(ds, "/triage/ticket?number=T-000001").text
    assert "<h2>T-000001: Severity1</h2>" in page
    assert "⚠ BREACHED" in page and "overdue 2h 00m" in page
    assert "priority: level 1 → P1 (connectwise)" in page  # the decision's reasons
    assert "No ticket T-999999." in get(ds, "/triage/ticket?number=T-999999").text


def test_search_finds_subjects_and_bodies_and_survives_what_is_typed(demo):
    ds = web.app(demo.path, clock=lambda: NOW)
    hits = rows(ds, "/triage/search.json?q=payroll+cutoff")
    assert [h["ticket"] for h in hits] == ["T-000013"]
    for typed in ('"', "AND", "subject:", "NEAR(", ""):
        assert get(ds, f"/triage/search.json?q={typed}").status_code == 200
    found = rows(ds, "/triage/messages.json?_search=payroll")  # the table's own search box
    assert sorted(m["subject"] for m in found) == [
        "PAYROLL RUN 2026-01B COMPLETED - 3 WARNINGS",  # filtered mail is found too
        "URGENT: payroll export fails, bank cutoff is 3 pm today",
    ]


def test_without_the_index_the_page_starts_and_has_no_search(tmp_path: Path):
    demo = demo_db(tmp_path, now=NOW, search=False)
    ds = web.app(demo.path, clock=lambda: NOW)
    assert get(ds, "/triage/search").status_code == 404
    assert rows(ds, "/triage/queue.json")[0]["ticket"] == demo.breached


def test_facets_by_priority_company_and_queue(demo):
    ds = web.app(demo.path, clock=lambda: NOW)
    data = get(ds, "/triage/tickets.json").json()
    facets = data["facet_results"]
    facets = facets.get("results", facets)  # Datasette 0.65 and 1.0 shapes
    assert {"priority", "company", "queue", "status"} <= set(facets)
    priority = {f["value"]: f["count"] for f in facets["priority"]["results"]}
    assert priority == {"P1": 2, "P2": 2, "P3": 17, "P4": 1}
    company = {f["value"]: f["count"] for f in facets["company"]["results"]}
    assert company["Acme Corp"] == 5


def test_the_page_cannot_write(demo, tmp_path: Path):
    db = tmp_path / "triage.db"
    db.write_bytes(demo.path.read_bytes())
    ds = web.app(db, clock=lambda: NOW)
    for sql in (
        "DELETE FROM tickets",
        "UPDATE tickets SET status = 'closed'",
        "PRAGMA query_only=0",
        "WITH x AS (SELECT 1) DELETE FROM tickets",
    ):
        assert get(ds, f"/triage.json?sql={sql}").status_code == 400, sql
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM tickets WHERE status = 'open'").fetchone() == (22,)
    conn.close()


@pytest.mark.parametrize("base_url", ["desk/", "/desk"])
def test_a_base_url_must_start_and_end_with_a_slash(demo, base_url: str):
    with pytest.raises(web.WebError, match="fix: e.g. /desk/"):
        web.app(demo.path, base_url=base_url)


def test_a_missing_database_is_named_with_the_fix(tmp_path: Path):
    with pytest.raises(
        web.WebError, match="nothere.db: no database here\n  fix: pass the daemon's database"
    ):
        web.app(tmp_path / "nothere.db")


@pytest.fixture(scope="module")
def live_demo(tmp_path_factory):
    """The demo replayed at the real clock: the page's own process reads the real clock."""
    return demo_db(tmp_path_factory.mktemp("live"))


@needs_chromium
def test_in_a_browser_the_queue_shows_tickets_in_due_order_and_the_breached_one_marked(
    live_demo, tmp_path: Path
):
    with web_server(live_demo.path) as root, open_browser(tmp_path) as browser:
        page = browser.new_page()
        page.goto(root + "triage/queue")
        table = page.locator("table.rows-and-columns")
        shown = table.locator("td.col-ticket").all_inner_texts()
        assert shown == due_order(live_demo.path)
        breached = table.locator(".desk-breached")
        assert breached.count() == 1
        assert breached.inner_text() == "⚠ BREACHED"
        assert breached.evaluate("e => getComputedStyle(e).color") == "rgb(176, 0, 32)"
        row = table.locator("tbody tr").filter(has=page.locator(".desk-breached"))
        assert row.locator("td.col-ticket").inner_text() == live_demo.breached
        assert "overdue" in row.locator("td.col-time_left").inner_text()

        # A person clicks the ticket and sees it whole.
        row.get_by_role("link", name=live_demo.breached).click()
        page.wait_for_url("**/triage/ticket?number=T-000001")
        assert page.get_by_role("heading", name="T-000001: Severity1").is_visible()
        assert page.locator(".desk-ticket-header .desk-breached").is_visible()
        entries = page.locator("table.rows-and-columns td.col-entry").all_inner_texts()
        assert entries[0] == "message"
        assert "Severity1" in page.locator("table.rows-and-columns").inner_text()


@needs_chromium
def test_in_a_browser_behind_a_proxy_path_and_search(live_demo, tmp_path: Path):
    with web_server(live_demo.path, base_url="/desk/") as root, open_browser(tmp_path) as browser:
        page = browser.new_page()
        page.goto(root + "triage/search?q=payroll+cutoff")
        assert page.locator("td.col-ticket").all_inner_texts() == ["T-000013"]
        page.get_by_role("link", name="T-000013").click()
        page.wait_for_url("**/desk/triage/ticket?number=T-000013")
        assert page.get_by_role(
            "heading", name="T-000013: URGENT: payroll export fails, bank cutoff is 3 pm today"
        ).is_visible()


def test_a_senders_markup_is_shown_as_text_never_run(demo, tmp_path: Path):
    db = tmp_path / "triage.db"
    db.write_bytes(demo.path.read_bytes())
    evil = '<img src=x onerror="alert(1)">'
    conn = sqlite3.connect(db)
    conn.execute(
        "UPDATE tickets SET subject = ?, requester_name = ?, company = ? WHERE number = 'T-000001'",
        (evil, evil, evil),
    )
    conn.execute(
        "UPDATE messages SET subject = ?, body = ? WHERE subject = 'Severity1'", (evil, evil)
    )
    conn.commit()
    conn.close()
    ds = web.app(db, clock=lambda: NOW)
    for path in ("/triage/queue", "/triage/ticket?number=T-000001", "/triage/tickets"):
        page = get(ds, path).text
        assert "<img src=x" not in page, path
        assert "&lt;img src=x onerror=" in page, path
