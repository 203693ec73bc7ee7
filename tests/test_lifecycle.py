"""A ticket's life through the command line: show, assign, note, status, priority.

Tickets are made by replaying small messages (`triage replay`), then changed with
`triage ticket ...` at chosen instants; the tests read the rows, events and sink
deliveries those commands leave. The default policy is connectwise, plan standard
(24/5, UTC).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from triage.cli import cli
from triage.core import lifecycle

from .conftest import build

TUE_0900 = "2026-03-10T09:00:00Z"
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Desk:
    """A database in tmp_path and the commands that change it."""

    def __init__(self, tmp_path: Path, extra: str = "") -> None:
        self.dir = tmp_path
        self.db = tmp_path / "triage.db"
        self.config = tmp_path / "triage.toml"
        self.config.write_text('[store]\ndb = "triage.db"\n' + extra, encoding="utf-8")
        self.runner = CliRunner()
        self.count = 0

    def run(self, *args: str, ok: bool = True):
        result = self.runner.invoke(cli, [*args, "--config", str(self.config)])
        if ok:
            assert result.exit_code == 0, result.output
        return result

    def replay(self, now: str, *raws: bytes) -> list[dict]:
        folder = self.dir / f"batch{self.count}"
        folder.mkdir()
        for raw in raws:
            self.count += 1
            (folder / f"{self.count:03d}.eml").write_bytes(raw)
        done = self.run("replay", "--now", now, "--json", str(folder))
        return [json.loads(line) for line in done.stdout.splitlines()]

    def mail(self, now: str = TUE_0900, subject: str = "Printer jammed") -> str:
        self.count += 0
        n = self.count + 1
        raw = build(
            {
                "From": f"User {n} <user{n}@acme.example>",
                "To": "support@triage.invalid",
                "Subject": subject,
                "Date": "Tue, 10 Mar 2026 08:59:00 +0000",
                "Message-ID": f"<m{n}@mail.acme.example>",
            },
            "Hello,\nthe printer is jammed.\nThanks\n",
        )
        (out,) = self.replay(now, raw)
        assert out["action"] == "ticket"
        return out["ticket"]

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args, "--json").stdout)

    def events(self, number: str) -> list[tuple[str, str, dict]]:
        with sqlite3.connect(self.db) as conn:
            rows = conn.execute(
                "SELECT e.kind, e.at, e.detail FROM events e JOIN tickets t ON t.id = e.ticket_id"
                " WHERE t.number = ? ORDER BY e.id",
                (number,),
            ).fetchall()
        return [(k, at, json.loads(d)) for k, at, d in rows]


@pytest.mark.parametrize(
    ("before", "after", "pauses", "clock"),
    [
        ("open", "pending", True, lifecycle.PAUSE),
        ("open", "pending", False, None),
        ("pending", "open", True, lifecycle.RESUME),
        ("pending", "resolved", False, lifecycle.RESUME),  # leaving pending ends any pause
        ("open", "resolved", True, None),
        ("resolved", "closed", True, None),
        ("closed", "open", True, None),
        ("pending-approval", "open", False, None),
    ],
)
def test_allowed_moves_and_what_they_do_to_the_clock(before, after, pauses, clock):
    assert lifecycle.move("T-000001", before, after, pauses).clock == clock


@pytest.mark.parametrize(
    ("before", "after", "fix"),
    [
        ("closed", "pending", "move it to open first"),
        ("closed", "resolved", "move it to open first"),
        ("resolved", "pending", "move it to open, closed"),
        ("open", "open", "nothing to do"),
        ("open", "waiting", "use one of open, pending, resolved, closed"),
    ],
)
def test_forbidden_moves_name_the_ticket_and_the_fix(before, after, fix):
    with pytest.raises(lifecycle.LifecycleError) as info:
        lifecycle.move("T-000007", before, after, False)
    assert "T-000007" in str(info.value) and fix in str(info.value)


def test_status_changes_are_events_with_who_and_when_and_open_means_not_done(tmp_path):
    desk = Desk(tmp_path)
    a, b = desk.mail(), desk.mail(subject="VPN slow")
    row = desk.json(
        "ticket", "status", a, "pending", "--by", "alice", "--at", "2026-03-10T10:00:00Z"
    )
    assert row["status"] == "pending" and row["number"] == a
    desk.run("ticket", "status", a, "resolved", "--by", "bob", "--at", "2026-03-10T11:00:00Z")
    row = desk.json("ticket", "status", a, "closed", "--by", "bob", "--at", "2026-03-10T12:00:00Z")
    assert row["status"] == "closed" and row["closed_at"] == "2026-03-10T12:00:00Z"
    changes = [(at, d) for kind, at, d in desk.events(a) if kind == "status_changed"]
    assert changes == [
        ("2026-03-10T10:00:00Z", {"from": "open", "to": "pending", "by": "alice"}),
        ("2026-03-10T11:00:00Z", {"from": "pending", "to": "resolved", "by": "bob"}),
        ("2026-03-10T12:00:00Z", {"from": "resolved", "to": "closed", "by": "bob"}),
    ]
    listed = [
        json.loads(line) for line in desk.run("tickets", "--open", "--json").stdout.splitlines()
    ]
    assert [t["number"] for t in listed] == [b]
    assert {"status", "assignee"} <= set(listed[0])
    # back from closed: open again, the closing instant forgotten
    row = desk.json("ticket", "status", a, "open", "--at", "2026-03-11T09:00:00Z")
    assert row["status"] == "open" and row["closed_at"] is None


def test_a_forbidden_transition_is_refused_and_writes_nothing(tmp_path):
    desk = Desk(tmp_path)
    a = desk.mail()
    desk.run("ticket", "status", a, "closed")
    done = desk.run("ticket", "status", a, "pending", ok=False)
    assert done.exit_code == 1
    assert f"{a} is closed: it cannot become pending" in done.output
    assert "fix: move it to open first" in done.output
    assert [k for k, _, _ in desk.events(a)].count("status_changed") == 1


def test_unknown_ticket_names_the_database_and_the_listing(tmp_path):
    desk = Desk(tmp_path)
    desk.mail()
    for args in (
        ("ticket", "show", "T-000042"),
        ("ticket", "assign", "42", "alice"),
        ("ticket", "note", "42", "hello"),
        ("ticket", "status", "42", "closed"),
        ("ticket", "priority", "42", "P1", "--reason", "x"),
    ):
        done = desk.run(*args, ok=False)
        assert done.exit_code == 1, args
        assert "no ticket T-000042" in done.output and "triage tickets --db" in done.output


def test_assign_and_note_are_events_and_show_lists_them(tmp_path):
    desk = Desk(tmp_path)
    a = desk.mail()
    row = desk.json("ticket", "assign", a, "alice@msp.example", "--by", "lead")
    assert row["assignee"] == "alice@msp.example"
    desk.run("ticket", "note", a, "Called, will replace the toner.", "--by", "alice")
    (tmp_path / "note.txt").write_text("Second note\nfrom a file.\n", encoding="utf-8")
    desk.run("ticket", "note", a, "--file", str(tmp_path / "note.txt"), "--by", "alice")
    piped = desk.runner.invoke(
        cli,
        ["ticket", "note", a, "--file", "-", "--by", "bob", "--config", str(desk.config)],
        input="From standard input.\n",
    )
    assert piped.exit_code == 0, piped.output
    kinds = [(k, d) for k, _, d in desk.events(a) if k in ("assigned", "note")]
    assert kinds == [
        ("assigned", {"from": None, "to": "alice@msp.example", "by": "lead"}),
        ("note", {"text": "Called, will replace the toner.", "by": "alice"}),
        ("note", {"text": "Second note\nfrom a file.", "by": "alice"}),
        ("note", {"text": "From standard input.", "by": "bob"}),
    ]
    shown = desk.json("ticket", "show", a, "--now", "2026-03-10T10:00:00Z")
    assert shown["assignee"] == "alice@msp.example" and shown["status"] == "open"
    assert [m["subject"] for m in shown["thread"]] == ["Printer jammed"]
    assert shown["thread"][0]["from_addr"] == "user1@acme.example"
    assert "the printer is jammed" in shown["thread"][0]["excerpt"]
    assert shown["sla"]["state"] == "running" and shown["sla"]["due"] == shown["response_due"]
    assert any(line.startswith("priority:") for line in shown["why"])
    assert [e["kind"] for e in shown["events"]][-4:] == ["assigned", "note", "note", "note"]
    (listed,) = [json.loads(line) for line in desk.run("tickets", "--json").stdout.splitlines()]
    assert (listed["status"], listed["assignee"]) == ("open", "alice@msp.example")
    text = desk.run("ticket", "show", a, "--now", "2026-03-10T10:00:00Z").stdout
    assert "assignee   alice@msp.example" in text and "left" in text
    assert "key <m1@mail.acme.example>" in text  # what `explain --message KEY` takes
    empty = desk.run("ticket", "note", a, "  ", ok=False)
    assert empty.exit_code == 1 and "the note is empty" in empty.output


def test_priority_recomputes_the_deadline_and_tells_the_sinks(tmp_path):
    (tmp_path / "hook.secret").write_text(SECRET + "\n")
    (tmp_path / "hook.secret").chmod(0o600)
    desk = Desk(
        tmp_path,
        '\n[[sink]]\nname = "hook"\nkind = "webhook"\nurl = "https://hooks.example.com/t"\n'
        'secret_file = "hook.secret"\nevents = ["ticket.priority_changed"]\n',
    )
    a = desk.mail()
    before = desk.json("ticket", "show", a)
    assert before["priority"] == "P3" and before["response_due"] == "2026-03-11T09:00:00Z"
    row = desk.json(
        "ticket", "priority", a, "P1", "--reason", "whole office down", "--by", "lead",
        "--at", "2026-03-10T09:30:00Z",
    )  # fmt: skip
    # P1 on standard is 2 hours, counted from when the ticket was opened
    assert row["priority"] == "P1" and row["response_due"] == "2026-03-10T11:00:00Z"
    assert row["level"] == 1 and row["target"] == "2h"
    (change,) = [d for k, _, d in desk.events(a) if k == "priority_changed"]
    assert change == {
        "from": "P3",
        "to": "P1",
        "reason": "whole office down",
        "by": "lead",
        "due": "2026-03-10T11:00:00Z",
    }
    with sqlite3.connect(desk.db) as conn:
        rows = conn.execute(
            "SELECT sink, event_type, ticket, status, event FROM deliveries"
        ).fetchall()
    ((sink, kind, ticket, status, body),) = rows
    assert (sink, kind, ticket, status) == ("hook", "ticket.priority_changed", a, "pending")
    data = json.loads(body)["data"]
    assert data["priority"] == "P1" and data["previous_priority"] == "P3"
    assert data["due"].startswith("2026-03-10T11:00:00")
    bad = desk.run("ticket", "priority", a, "P9", "--reason", "x", ok=False)
    assert bad.exit_code == 1 and "'P9' is not a priority" in bad.output
    assert "P1..P4" in bad.output


def test_priority_needs_a_reason(tmp_path):
    desk = Desk(tmp_path)
    a = desk.mail()
    done = desk.run("ticket", "priority", a, "P2", ok=False)
    assert done.exit_code == 2 and "--reason" in done.output


def _pausing_rules(tmp_path: Path) -> str:
    """A copy of the shipped rules whose connectwise policy pauses the clock while pending."""
    import shutil

    from .conftest import ROOT

    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    policy = rules / "sla" / "connectwise.toml"
    text = policy.read_text(encoding="utf-8")
    policy.write_text(text.replace("[policy]\n", "[policy]\npause_when_pending = true\n", 1))
    return f'[rules]\ndir = "{rules}"\n'


def test_pending_pauses_the_clock_where_the_policy_says_so(tmp_path):
    desk = Desk(tmp_path, _pausing_rules(tmp_path))
    a = desk.mail()  # Tue 09:00, P3 on standard (24/5): due Wed 09:00
    row = desk.json("ticket", "status", a, "pending", "--at", "2026-03-10T10:00:00Z")
    assert row["paused_at"] == "2026-03-10T10:00:00Z"
    assert row["response_due"] == "2026-03-11T09:00:00Z"
    # Thursday: past the old deadline, but the clock is paused: no breach
    check = desk.run("sla", "check", "--now", "2026-03-12T10:00:00Z", ok=False)
    assert "0 sla_breached written" in check.stdout
    breached = desk.run("tickets", "--breached", "--json", "--now", "2026-03-12T10:00:00Z")
    assert breached.stdout == ""
    sla = desk.json("ticket", "show", a, "--now", "2026-03-12T10:00:00Z")["sla"]
    assert sla["state"] == "paused"
    # ... and `show` reads the same stopped clock as `sla check`: 23 h were left when it paused
    assert sla["left_seconds"] == 23 * 3600 and "breached" not in sla["text"]
    # back to open on Thursday 12:00: 23 open hours were left, so due Friday 11:00
    row = desk.json("ticket", "status", a, "open", "--at", "2026-03-12T12:00:00Z")
    assert row["paused_at"] is None
    assert row["response_due"] == "2026-03-13T11:00:00Z"
    (resumed,) = [d for k, _, d in desk.events(a) if k == "status_changed" and d["to"] == "open"]
    assert resumed["clock"] == "resumed" and resumed["due_before"] == "2026-03-11T09:00:00Z"
    check = desk.run("sla", "check", "--now", "2026-03-13T12:00:00Z", ok=False)
    assert f"1 sla_breached written ({a})" in check.stdout


def test_pending_on_a_policy_that_does_not_pause_leaves_the_deadline(tmp_path):
    desk = Desk(tmp_path)  # the shipped connectwise policy: its contract names no pause
    a = desk.mail()
    row = desk.json("ticket", "status", a, "pending", "--at", "2026-03-10T10:00:00Z")
    assert row["paused_at"] is None
    check = desk.run("sla", "check", "--now", "2026-03-12T10:00:00Z", ok=False)
    assert f"1 sla_breached written ({a})" in check.stdout
    row = desk.json("ticket", "status", a, "open", "--at", "2026-03-12T12:00:00Z")
    assert row["response_due"] == "2026-03-11T09:00:00Z"


def test_resolved_and_closed_tickets_are_not_breached(tmp_path):
    desk = Desk(tmp_path)
    a = desk.mail()
    desk.run("ticket", "status", a, "resolved", "--at", "2026-03-10T10:00:00Z")
    check = desk.run("sla", "check", "--now", "2026-03-12T10:00:00Z", ok=False)
    assert "0 sla_breached written" in check.stdout


def test_a_policy_file_with_a_pause_that_is_not_true_or_false_is_refused(tmp_path):
    from triage.core import sla

    from .conftest import ROOT

    bad = tmp_path / "p.toml"
    text = (ROOT / "rules" / "sla" / "connectwise.toml").read_text(encoding="utf-8")
    bad.write_text(text.replace("[policy]\n", '[policy]\npause_when_pending = "yes"\n', 1))
    with pytest.raises(sla.SlaError) as info:
        sla.Policy.from_toml(bad)
    assert str(bad) in str(info.value) and "[policy] 'pause_when_pending'" in str(info.value)
    assert "fix: write pause_when_pending = true" in str(info.value)
