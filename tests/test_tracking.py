"""SLA tracking: first responses, warnings at 75 %, breaches once, the response report.

Databases are built by replaying small messages through the real pipeline
(`triage replay`), then `triage sla check`, `ticket respond` and `report` run at
chosen instants. Deadlines are those of the default policy (connectwise, plan
standard, 24/5, UTC) and are checked with `sla.due` rather than assumed.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from triage import instants
from triage.cli import cli
from triage.config import Config
from triage.core import sla
from triage.service import tracking
from triage.store.sqlite import Store

from .conftest import build

TUE_0900 = "2026-03-10T09:00:00Z"  # a Tuesday: the 24/5 calendar is open all day
FRI_2000 = "2026-03-13T20:00:00Z"  # Friday evening: four open hours left before the weekend


def at(text: str) -> datetime:
    return instants.parse(text)


def connectwise_due(priority: str, received: str) -> str:
    policies = sla.load_policies(Config().sla_dir)
    policy = policies["connectwise"]
    deadline = sla.due(policy, "standard", policy.rank_of(priority), at(received), "UTC")
    assert deadline.due is not None
    return tracking.iso(deadline.due)


class Desk:
    """A support database in tmp_path, driven through the command line."""

    def __init__(self, tmp_path: Path, policy: str | None = None) -> None:
        self.dir = tmp_path
        self.db = tmp_path / "triage.db"
        self.config = tmp_path / "triage.toml"
        text = '[store]\ndb = "triage.db"\n'
        if policy:
            text += f'[sla]\npolicy = "{policy}"\n'
        self.config.write_text(text, encoding="utf-8")
        self.runner = CliRunner()
        self.count = 0

    def run(self, *args: str, ok: bool = True):
        result = self.runner.invoke(cli, [*args, "--config", str(self.config)])
        if ok:
            assert result.exit_code == 0, result.output
        return result

    def mail(self, now: str, *subjects: str) -> list[dict]:
        """Replay one message per subject, each from its own sender, at `now`."""
        folder = self.dir / f"batch{self.count}"
        folder.mkdir()
        for subject in subjects:
            self.count += 1
            raw = build(
                {
                    "From": f"User {self.count} <user{self.count}@acme.example>",
                    "To": "support@triage.invalid",
                    "Subject": subject,
                    "Date": "Tue, 10 Mar 2026 08:59:00 +0000",
                    "Message-ID": f"<m{self.count}@mail.acme.example>",
                },
                "Hello,\nsee the subject.\nThanks\n",
            )
            (folder / f"{self.count:03d}.eml").write_bytes(raw)
        result = self.run("replay", "--db", str(self.db), "--now", now, "--json", str(folder))
        out = [json.loads(line) for line in result.stdout.splitlines()]
        assert [d["action"] for d in out] == ["ticket"] * len(subjects)
        return out

    def check(self, now: str) -> str:
        result = self.run("sla", "check", "--now", now, ok=False)
        assert result.exit_code in (0, 1, 2), result.output  # ok, warning, critical
        return result.stdout

    def respond(self, number: str, when: str, ok: bool = True):
        return self.run("ticket", "respond", number, "--at", when, ok=ok)

    def report(self, now: str, *extra: str) -> dict:
        return json.loads(self.run("report", "--now", now, "--json", *extra).stdout)

    def events(self, kind: str) -> list[tuple[str, str]]:
        """(ticket number, at) of every event of `kind`, in order written."""
        with sqlite3.connect(self.db) as conn:
            return conn.execute(
                "SELECT t.number, e.at FROM events e JOIN tickets t ON t.id = e.ticket_id"
                " WHERE e.kind = ? ORDER BY e.id",
                (kind,),
            ).fetchall()

    def column(self, number: str, name: str) -> str | None:
        assert name in ("first_response_at", "response_due", "priority")
        with sqlite3.connect(self.db) as conn:
            return conn.execute(
                f"SELECT {name} FROM tickets WHERE number = ?", (number,)
            ).fetchone()[0]


@pytest.fixture
def desk(tmp_path: Path) -> Desk:
    return Desk(tmp_path)


def test_a_warning_once_at_75_percent_and_a_breach_once_after_the_deadline(desk):
    (d,) = desk.mail(TUE_0900, "URGENT: server down")
    number = d["ticket"]
    assert d["priority"] == "P1"
    assert d["due"].replace("+00:00", "Z") == connectwise_due("P1", TUE_0900)
    assert desk.column(number, "response_due") == "2026-03-10T11:00:00Z"  # 2 open hours

    assert "0 sla_warning written, 0 sla_breached written" in desk.check("2026-03-10T10:29:00Z")
    assert f"1 sla_warning written ({number})" in desk.check("2026-03-10T10:30:00Z")  # 1h30 of 2h
    desk.check("2026-03-10T10:45:00Z")
    desk.check("2026-03-10T11:00:00Z")  # due, not yet past it
    assert desk.events("sla_breached") == []
    assert f"1 sla_breached written ({number})" in desk.check("2026-03-10T11:01:00Z")
    for _ in range(3):
        assert "0 sla_warning written, 0 sla_breached written" in desk.check("2026-03-10T12:00:00Z")

    assert desk.events("sla_warning") == [(number, "2026-03-10T10:30:00Z")]
    assert desk.events("sla_breached") == [(number, "2026-03-10T11:01:00Z")]


def test_a_ticket_answered_in_time_never_warns_or_breaches(desk):
    answered, ignored = (
        d["ticket"] for d in desk.mail(TUE_0900, "URGENT: site down", "Sev 1: outage")
    )
    result = desk.respond(answered.replace("T-", "").lstrip("0"), "2026-03-10T09:45:00Z")
    assert f"{answered}: first response recorded at 2026-03-10T09:45:00Z, within target" in (
        result.output
    )
    assert desk.column(answered, "first_response_at") == "2026-03-10T09:45:00Z"

    desk.check("2026-03-10T10:30:00Z")
    desk.check("2026-03-10T12:00:00Z")
    assert desk.events("sla_warning") == [(ignored, "2026-03-10T10:30:00Z")]
    assert desk.events("sla_breached") == [(ignored, "2026-03-10T12:00:00Z")]
    assert desk.events("first_response") == [(answered, "2026-03-10T09:45:00Z")]


def test_a_second_response_keeps_the_first_and_says_so(desk):
    (d,) = desk.mail(TUE_0900, "URGENT: server down")
    number = d["ticket"]
    desk.respond(number, "2026-03-10T09:30:00Z")
    again = desk.respond(number, "2026-03-10T10:00:00Z")
    assert again.exit_code == 0
    assert f"{number} was already answered at 2026-03-10T09:30:00Z" in again.output
    assert desk.column(number, "first_response_at") == "2026-03-10T09:30:00Z"
    assert desk.events("first_response") == [(number, "2026-03-10T09:30:00Z")]


def test_an_unknown_ticket_is_named_with_how_to_list_tickets(desk):
    desk.mail(TUE_0900, "URGENT: server down")
    result = desk.respond("42", "2026-03-10T09:30:00Z", ok=False)
    assert result.exit_code != 0
    assert "no ticket T-000042" in result.output and "triage tickets" in result.output
    bad = desk.respond("T-abc", "2026-03-10T09:30:00Z", ok=False)
    assert bad.exit_code != 0 and "'T-abc' is not a ticket number" in bad.output
    early = desk.respond("1", "2026-03-10T08:00:00Z", ok=False)
    assert early.exit_code != 0 and "opened at 2026-03-10T09:00:00Z" in early.output
    assert desk.events("first_response") == []


def test_no_database_is_an_error_not_a_new_file(tmp_path):
    desk = Desk(tmp_path)
    result = desk.run("sla", "check", ok=False)
    assert result.exit_code != 0 and "no database here" in result.output
    assert not desk.db.exists()


def test_progress_counts_open_time_on_the_calendar_not_the_weekend(desk):
    """P3 on Friday 20:00: 4 open hours on Friday, 20 on Monday; due Monday 20:00.

    Monday 08:00 is 60 of 72 wall-clock hours (83 %) but 12 of 24 open hours.
    """
    (d,) = desk.mail(FRI_2000, "Printer on floor 2 is jammed")
    number = d["ticket"]
    assert d["priority"] == "P3"
    assert desk.column(number, "response_due") == connectwise_due("P3", FRI_2000)
    assert connectwise_due("P3", FRI_2000) == "2026-03-16T20:00:00Z"

    desk.check("2026-03-14T12:00:00Z")
    desk.check("2026-03-16T08:00:00Z")
    assert desk.events("sla_warning") == []
    store = Store(desk.db)
    policies = sla.load_policies(Config().sla_dir)
    try:
        assert tracking.at_risk(store, policies, at("2026-03-16T13:59:00Z")) == []
        assert tracking.at_risk(store, policies, at("2026-03-16T14:00:00Z")) == [number]
        assert tracking.breached(store, at("2026-03-16T20:00:00Z")) == []
        assert tracking.breached(store, at("2026-03-16T20:00:01Z")) == [number]
        assert tracking.at_risk(store, policies, at("2026-03-16T20:00:01Z")) == []
    finally:
        store.close()
    desk.check("2026-03-16T14:00:00Z")
    assert desk.events("sla_warning") == [(number, "2026-03-16T14:00:00Z")]


def test_a_first_check_after_the_deadline_writes_the_breach_only(desk):
    (d,) = desk.mail(TUE_0900, "URGENT: server down")
    desk.check("2026-03-10T15:00:00Z")
    desk.check("2026-03-10T16:00:00Z")
    assert desk.events("sla_breached") == [(d["ticket"], "2026-03-10T15:00:00Z")]
    assert desk.events("sla_warning") == []


def test_check_reads_written_events_so_a_second_caller_writes_nothing(desk):
    """The daemon and the timer share one function: the events table is the memory."""
    (d,) = desk.mail(TUE_0900, "URGENT: server down")
    policies = sla.load_policies(Config().sla_dir)
    first, second = Store(desk.db), Store(desk.db)
    try:
        one = tracking.check(first, policies, at("2026-03-10T12:00:00Z"))
        two = tracking.check(second, policies, at("2026-03-10T12:00:00Z"))
    finally:
        first.close()
        second.close()
    assert (one.breached, one.warned) == ((d["ticket"],), ())
    assert (two.breached, two.warned) == ((), ())
    assert len(desk.events("sla_breached")) == 1


def test_tickets_without_a_deadline_never_warn_or_breach_and_count_apart(tmp_path):
    desk = Desk(tmp_path, policy="connectsoft")  # plan standard: Severity 3 has no SLA
    none, urgent = desk.mail(TUE_0900, "Printer on floor 2 is jammed", "URGENT: server down")
    assert (none["priority"], none["due"]) == ("Severity 3", None)
    assert urgent["priority"] == "Severity 1" and urgent["due"] is not None

    assert urgent["due"].startswith("2026-03-10T13:00:00")  # 4 business hours from 09:00

    desk.check("2026-03-10T10:00:00Z")
    desk.check("2026-03-10T12:00:00Z")
    desk.check("2026-03-20T10:00:00Z")
    assert desk.events("sla_warning") == [(urgent["ticket"], "2026-03-10T12:00:00Z")]
    assert desk.events("sla_breached") == [(urgent["ticket"], "2026-03-20T10:00:00Z")]

    report = desk.report("2026-03-20T10:00:00Z")
    rows = {r["priority"]: r for r in report["priorities"]}
    assert list(rows) == ["Severity 1", "Severity 3"]
    assert rows["Severity 3"] == {
        "priority": "Severity 3",
        "tickets": 1,
        "within_target": 0,
        "late": 0,
        "open_breached": 0,
        "open_in_time": 0,
        "no_target": 1,
        "percent_within_target": None,
    }
    assert (report["total"]["no_target"], report["total"]["percent_within_target"]) == (1, 0.0)


def test_report_counts_and_percentages_per_priority(desk):
    p1 = [d["ticket"] for d in desk.mail(TUE_0900, *["URGENT: server down"] * 3)]
    p3 = [d["ticket"] for d in desk.mail(TUE_0900, *["Printer on floor 2 is jammed"] * 2)]
    assert [desk.column(n, "priority") for n in p1 + p3] == ["P1"] * 3 + ["P3"] * 2
    desk.respond(p1[0], "2026-03-10T11:00:00Z")  # exactly at the deadline: in time
    late = desk.respond(p1[1], "2026-03-10T11:30:00Z")
    assert "late (due 2026-03-10T11:00:00Z)" in late.output
    desk.respond(p3[0], "2026-03-10T10:00:00Z")

    report = desk.report("2026-03-10T12:00:00Z")
    got = {
        r["priority"]: (
            r["tickets"],
            r["within_target"],
            r["late"],
            r["open_breached"],
            r["open_in_time"],
            r["no_target"],
            r["percent_within_target"],
        )
        for r in [*report["priorities"], report["total"]]
    }
    assert got == {
        "P1": (3, 1, 1, 1, 0, 0, 33.3),
        "P3": (2, 1, 0, 0, 1, 0, 100.0),
        "total": (5, 2, 1, 1, 1, 0, 50.0),
    }

    text = desk.run("report", "--now", "2026-03-10T12:00:00Z").stdout
    assert "within target: 50.0 % (2 of 4)" in text
    assert "33.3" in text and "100.0" in text

    # a later batch, reported alone with --since
    (later,) = desk.mail("2026-03-11T09:00:00Z", "URGENT: server down")
    desk.respond(later["ticket"], "2026-03-11T09:30:00Z")
    since = desk.report("2026-03-11T12:00:00Z", "--since", "2026-03-11T00:00:00Z")
    assert [(r["priority"], r["tickets"], r["within_target"]) for r in since["priorities"]] == [
        ("P1", 1, 1)
    ]
    assert since["total"]["percent_within_target"] == 100.0
    everything = desk.report("2026-03-11T12:00:00Z")
    assert everything["total"]["tickets"] == 6
    # P3 p3[1] is now past its deadline (Wed 09:00) with no answer
    assert everything["total"]["open_breached"] == 2


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("T-000123", "T-000123"),
        ("t-123", "T-000123"),
        ("#T-000007", "T-000007"),
        ("123", "T-000123"),
    ],
)
def test_ticket_numbers_take_the_prefix_or_just_digits(text, number):
    assert tracking.ticket_number_from(text, "T-") == number


@pytest.mark.parametrize("text", ["", "T-", "abc", "T-12a", "0", "-5", "T-١٢"])
def test_other_ticket_numbers_are_refused(text):
    with pytest.raises(tracking.TrackingError, match="fix: write T-000123 or just 123"):
        tracking.ticket_number_from(text, "T-")


def test_due_events_pure_rules():
    """No deadline, answered or closed: nothing; already written: nothing again."""
    now = at("2026-03-10T12:00:00Z")

    def ticket(i: int, **kw) -> tracking.Ticket:
        base = dict(
            id=i,
            number=f"T-{i:06d}",
            status="open",
            priority="P1",
            level=1,
            policy="connectwise",
            plan="standard",
            timezone="UTC",
            due=at("2026-03-10T11:00:00Z"),
            created=at(TUE_0900),
            responded=None,
        )
        base.update(kw)
        return tracking.Ticket(**base)

    policies = sla.load_policies(Config().sla_dir)
    tickets = [
        ticket(1),
        ticket(2, due=None, priority="P3", level=3),
        ticket(3, responded=at("2026-03-10T09:10:00Z")),
        ticket(4, status="closed"),
        ticket(5),
        ticket(6, due=at("2026-03-10T13:00:00Z"), created=at("2026-03-10T11:00:00Z")),
        ticket(
            7, policy="gone", due=at("2026-03-10T13:00:00Z"), created=at("2026-03-10T11:00:00Z")
        ),
    ]
    owed = tracking.due_events(tickets, {5: frozenset({tracking.BREACHED})}, policies, now)
    assert [t.number for t in owed.breach] == ["T-000001"]
    assert [(t.number, f) for t, f in owed.warn] == []  # T-000006 has used 1h of 2h: 50 %
    assert len(owed.problems) == 1 and owed.problems[0].startswith("T-000007: ")
    late = tracking.due_events(tickets, {}, policies, at("2026-03-10T12:30:00Z"))
    assert [(t.number, f) for t, f in late.warn] == [("T-000006", 0.75)]


def test_sla_check_exits_0_ok_1_at_risk_2_breached(desk):
    (d,) = desk.mail(TUE_0900, "URGENT: server down")  # P1, due 11:00
    assert desk.run("sla", "check", "--now", "2026-03-10T10:00:00Z", ok=False).exit_code == 0
    at_risk = desk.run("sla", "check", "--now", "2026-03-10T10:45:00Z", ok=False)
    assert at_risk.exit_code == 1 and "WARNING: 1 ticket at risk" in at_risk.stdout
    late = desk.run("sla", "check", "--now", "2026-03-10T11:01:00Z", ok=False)
    assert late.exit_code == 2 and "CRITICAL: 1 ticket breached" in late.stdout
    desk.respond(d["ticket"], "2026-03-10T11:30:00Z")
    assert desk.run("sla", "check", "--now", "2026-03-10T12:00:00Z", ok=False).exit_code == 0


def test_sla_check_that_cannot_tell_exits_3(tmp_path):
    desk = Desk(tmp_path)
    assert desk.run("sla", "check", ok=False).exit_code == 3  # no database
    assert desk.run("sla", "check", "--now", "yesterday", ok=False).exit_code == 3
    assert desk.run("sla", "check", "--no-such-option", ok=False).exit_code == 3


def test_a_now_in_the_future_is_a_preview_that_writes_nothing(desk):
    """A --now later than the clock would write breaches that have not happened (they are
    permanent): it shows what would be written, and writes nothing."""
    desk.run("replay", "--db", str(desk.db), str(_one_mail(desk.dir)))  # created now
    later = desk.run("sla", "check", "--now", "2099-01-05T12:00:00Z", ok=False)
    assert later.exit_code == 2
    assert "preview" in later.stdout and "1 sla_breached would be written" in later.stdout
    assert desk.events("sla_breached") == [] and desk.events("sla_warning") == []
    desk.check(tracking.iso(datetime.now(UTC)))  # the real check at the real time
    assert desk.events("sla_breached") == []


def _one_mail(folder: Path) -> Path:
    path = folder / "now.eml"
    path.write_bytes(
        build(
            {
                "From": "Now <now@acme.example>",
                "To": "support@triage.invalid",
                "Subject": "URGENT: server down",
                "Message-ID": "<now@mail.acme.example>",
            }
        )
    )
    return path


HOLD = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


@contextlib.contextmanager
def write_lock_held(db: Path, seconds: float):
    """Another process holds the database's write lock (as the daemon does while it writes a
    batch) for `seconds`; stopped by its pid at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_ticket_respond_waits_for_a_writer_that_holds_the_lock_briefly(desk):
    (d,) = desk.mail(TUE_0900, "URGENT: server down")
    with write_lock_held(desk.db, 1.5):
        started = time.monotonic()
        result = desk.respond(d["ticket"], "2026-03-10T10:00:00Z")
        assert time.monotonic() - started >= 1.0  # it waited...
    assert "first response recorded" in result.output  # ...and succeeded
    assert desk.column(d["ticket"], "first_response_at") == "2026-03-10T10:00:00Z"


def test_a_lock_held_too_long_is_a_clear_error_not_a_traceback(desk, monkeypatch):
    from triage.cli import common as cli_common

    monkeypatch.setattr(cli_common, "WAIT_SECONDS", 0.5)
    (d,) = desk.mail(TUE_0900, "URGENT: server down")
    with write_lock_held(desk.db, 60):
        result = desk.respond(d["ticket"], "2026-03-10T10:00:00Z", ok=False)
        check = desk.run("sla", "check", "--now", "2026-03-10T10:00:00Z", ok=False)
    assert result.exit_code == 1 and not isinstance(result.exception, sqlite3.Error)
    assert f"{desk.db}: the database is locked by another process" in result.output
    assert "fix:" in result.output and "Traceback" not in result.output
    assert desk.column(d["ticket"], "first_response_at") is None
    assert check.exit_code == 3 and "locked" in check.output  # a monitor: cannot tell


# (priority, level, created, due, responded, paused): every outcome, both instant formats
COUNTED = [
    ("P1", 1, "2026-03-10T09:00:00Z", "2026-03-10T10:00:00Z", "2026-03-10T10:00:00Z", None),
    ("P1", 1, "2026-03-10T09:00:00Z", "2026-03-10T10:00:00.5Z", "2026-03-10T10:00:00Z", None),
    ("P1", 1, "2026-03-10T09:00:00Z", "2026-03-10T10:00:00Z", "2026-03-10T10:00:00.25Z", None),
    ("P2", 2, "2026-03-10T09:00:00Z", "2026-03-10T13:00:00Z", None, None),  # breached
    ("P2", 2, "2026-03-11T09:00:00Z", "2026-03-11T13:00:00Z", None, None),  # pending
    ("P2", 2, "2026-03-10T09:00:00Z", "2026-03-10T13:00:00Z", None, "2026-03-10T12:00:00Z"),
    ("P2", 2, "2026-03-10T09:00:00Z", "2026-03-10T13:00:00Z", None, "2026-03-10T14:00:00Z"),
    ("P3", None, "2026-03-09T09:00:00Z", None, None, None),  # no target
    (None, None, "2026-03-10T09:00:00Z", "2026-03-10T13:00:00Z", None, None),
    ("", None, "2026-03-11T09:00:00Z", "2026-03-12T13:00:00Z", "2026-03-11T10:00:00Z", None),
]


@pytest.mark.parametrize("since", [None, "2026-03-10T00:00:00Z", "2026-03-11T00:00:00Z"])
def test_the_report_counted_in_sql_is_the_report_tally_makes_of_every_ticket(store, since):
    """The store counts the report in SQL (a store with years in it), on SQLite and on
    PostgreSQL (its own form of the statement); `tally` over every ticket read into Python
    is the definition it must agree with, edge by edge."""
    from triage.core.sla import tracking as rules
    from triage.store import tickets

    for n, (priority, level, created, due, responded, paused) in enumerate(COUNTED, start=1):
        store.conn.execute(
            "INSERT INTO tickets (id, number, status, requester, priority, level, created_at,"
            " response_due, first_response_at, paused_at)"
            " VALUES (?, ?, 'open', 'a@example.com', ?, ?, ?, ?, ?, ?)",
            (n, f"T-{n:06d}", priority, level, created, due, responded, paused),
        )
    now = at("2026-03-11T10:00:00Z")
    start = at(since) if since else None
    counted = rules.tally_counted(tickets.outcome_counts(store, now, start))
    assert counted == rules.tally(tickets.every(store), now, start)
    if since is None:  # and what that is, by hand
        rows, total = counted
        assert [
            (r.priority, r.within, r.late, r.breached, r.pending, r.no_target) for r in rows
        ] == [
            ("P1", 2, 1, 0, 0, 0),
            ("P2", 0, 0, 2, 2, 0),
            ("(none)", 1, 0, 1, 0, 0),  # no level: after those with one, by name
            ("P3", 0, 0, 0, 0, 1),
        ]


# Opened around the edge of a window that starts 2026-03-11T00:00:00Z, written in offsets
# (a row another tool wrote, or edited by hand): in the window or not by the instant, never
# by the text's date.
AROUND = [
    ("2026-03-10T20:00:00-05:00", True),  # 01:00Z on the 11th: in, though its date is the 10th
    ("2026-03-10T10:00:00-14:00", True),  # 00:00Z on the 11th
    ("2026-03-10T09:59:59-14:00", False),
    ("2026-03-11T00:30:00+01:00", False),  # 23:30Z on the 10th: out, though dated the 11th
    ("2026-03-10T23:59:59.999Z", False),  # (SQLite reads instants to the millisecond)
    ("2026-03-11T00:00:00Z", True),
    ("2026-03-11 00:00:01Z", True),  # SQLite's own spelling, a space for the T
]


def test_the_window_of_a_report_is_read_by_instant_not_by_the_text_of_its_date(store):
    from triage.core.sla import tracking as rules
    from triage.store import tickets

    for n, (created, _) in enumerate(AROUND, start=1):
        store.conn.execute(
            "INSERT INTO tickets (id, number, status, requester, priority, level, created_at)"
            " VALUES (?, ?, 'open', 'a@example.com', 'P3', 3, ?)",
            (n, f"T-{n:06d}", created),
        )
    now, since = at("2026-03-12T10:00:00Z"), at("2026-03-11T00:00:00Z")
    counted = rules.tally_counted(tickets.outcome_counts(store, now, since))
    assert counted == rules.tally(tickets.every(store), now, since)
    assert counted[1].tickets == sum(inside for _, inside in AROUND)
