"""A customer's reply to a finished ticket: within `[tickets] reopen_days` of its closing
(or to a resolved one) it reopens it; later it opens a new ticket linked to the old one,
and `explain` says which and why."""

from __future__ import annotations

import sqlite3

from .test_first_response import OPENED, agent, customer, ticket
from .test_lifecycle import Desk

FOLLOW_UP = {
    "Message-ID": "<q2@mail.acme.example>",
    "In-Reply-To": "<q1@mail.acme.example>",
    "Subject": "Re: Printer on floor 2 is jammed",
}


def events(desk: Desk, kind: str) -> list[tuple[str, str]]:
    with sqlite3.connect(desk.db) as conn:
        return conn.execute(
            "SELECT t.number, e.detail FROM events e JOIN tickets t ON t.id = e.ticket_id"
            " WHERE e.kind = ? ORDER BY e.id",
            (kind,),
        ).fetchall()


def closed_desk(tmp_path, extra: str = "", state: str = "closed") -> Desk:
    desk = Desk(tmp_path, extra)
    desk.replay(OPENED, customer())
    desk.run("ticket", "status", "T-000001", state, "--at", "2026-03-11T09:00:00Z")
    return desk


def test_a_reply_within_the_days_reopens_the_closed_ticket(tmp_path):
    desk = closed_desk(tmp_path)
    (out,) = desk.replay("2026-03-20T09:00:00Z", customer(**FOLLOW_UP))  # 9 days later
    assert (out["action"], out["ticket"]) == ("append", "T-000001")
    t = ticket(desk)
    assert (t["status"], t["closed_at"]) == ("open", None)
    assert events(desk, "reopened") == [
        ("T-000001", '{"from": "closed", "to": "open", "by": "jane@acme.example"}')
    ]


def test_a_reply_after_the_days_opens_a_new_ticket_linked_to_the_old(tmp_path):
    desk = closed_desk(tmp_path)
    (tmp_path / "late.eml").write_bytes(customer(**FOLLOW_UP))
    said = desk.run(
        "explain", "--db", str(desk.db), "--now", "2026-04-01T09:00:00Z", str(tmp_path / "late.eml")
    ).stdout
    said = " ".join(said.split())
    assert (
        "T-000001 was closed at 2026-03-11T09:00:00Z, more than 14 days ago "
        "([tickets] reopen_days): new ticket linked to it" in said
    )
    (out,) = desk.replay("2026-04-01T09:00:00Z", customer(**FOLLOW_UP))  # 21 days later
    assert (out["action"], out["ticket"], out["linked_ticket"]) == (
        "ticket",
        "T-000002",
        "T-000001",
    )
    assert ticket(desk, "T-000002")["linked_to"] == "T-000001"
    assert ticket(desk)["status"] == "closed"
    assert events(desk, "reopened") == []


def test_a_reply_to_a_resolved_ticket_reopens_it(tmp_path):
    desk = closed_desk(tmp_path, state="resolved")
    (out,) = desk.replay("2026-05-01T09:00:00Z", customer(**FOLLOW_UP))
    assert (out["action"], out["ticket"]) == ("append", "T-000001")
    assert ticket(desk)["status"] == "open"


def test_our_agents_mail_to_a_closed_ticket_does_not_reopen_it(tmp_path):
    desk = closed_desk(tmp_path)
    (out,) = desk.replay("2026-03-12T09:00:00Z", agent())
    assert (out["action"], out["ticket"]) == ("append", "T-000001")
    assert ticket(desk)["status"] == "closed"


def test_check_refuses_reopen_days_out_of_range(tmp_path):
    desk = Desk(tmp_path, "[tickets]\nreopen_days = -1\n")
    done = desk.run("check", ok=False)
    assert done.exit_code == 1
    assert "[tickets.reopen_days] -1 is outside the range 0 to 3650" in done.output
    assert "fix: write reopen_days = 14" in done.output


def test_a_customers_reply_to_a_pending_ticket_opens_it(tmp_path):
    desk = closed_desk(tmp_path, state="pending")  # the shipped policy: the clock never paused
    due = ticket(desk)["response_due"]
    (out,) = desk.replay("2026-03-12T12:00:00Z", customer(**FOLLOW_UP))
    assert (out["action"], out["ticket"]) == ("append", "T-000001")
    t = ticket(desk)
    assert (t["status"], t["response_due"]) == ("open", due)
    assert events(desk, "reopened") == [
        ("T-000001", '{"from": "pending", "to": "open", "by": "jane@acme.example"}')
    ]


def paused_desk(tmp_path) -> tuple[Desk, str]:
    """T-000001 opened Tue 09:00 (P3 on standard, 24/5: due Wed 09:00) on a policy that
    pauses while pending, pending from 10:00; the desk and its rules' config lines."""
    from .test_lifecycle import _pausing_rules

    rules = _pausing_rules(tmp_path)
    desk = Desk(tmp_path, rules)
    desk.replay(OPENED, customer())
    desk.run("ticket", "status", "T-000001", "pending", "--at", "2026-03-10T10:00:00Z")
    return desk, rules


def assert_resumed_thursday(desk: Desk) -> None:
    """The customer answered Thu 12:00 with 23 open hours left: open, due Fri 11:00."""
    t = ticket(desk)
    assert (t["status"], t["paused_at"], t["response_due"]) == (
        "open",
        None,
        "2026-03-13T11:00:00Z",
    )
    ((_, detail),) = events(desk, "reopened")
    assert '"due": "2026-03-13T11:00:00Z"' in detail


def test_a_customers_reply_runs_a_paused_clock_again_with_its_deadline_moved(tmp_path):
    desk, _ = paused_desk(tmp_path)
    (tmp_path / "answer.eml").write_bytes(customer(**FOLLOW_UP))
    said = desk.run(
        "explain",
        "--db",
        str(desk.db),
        "--now",
        "2026-03-12T12:00:00Z",
        str(tmp_path / "answer.eml"),
    ).stdout
    assert (
        "T-000001 was pending, its clock paused: jane@acme.example answered; deadline "
        "2026-03-11T09:00:00Z -> 2026-03-13T11:00:00Z" in " ".join(said.split())
    )
    desk.replay("2026-03-12T12:00:00Z", customer(**FOLLOW_UP))
    assert_resumed_thursday(desk)


def test_our_agents_mail_to_a_pending_ticket_leaves_it_pending(tmp_path):
    desk = closed_desk(tmp_path, state="pending")
    desk.replay("2026-03-10T12:00:00Z", agent())
    assert ticket(desk)["status"] == "pending"


def test_a_paused_ticket_on_a_policy_no_longer_configured_runs_again_on_its_own(tmp_path):
    """The desk moved to another policy while a ticket waited on the customer: their reply
    runs the ticket's clock again on the policy it was opened under, not left pending."""
    desk, rules = paused_desk(tmp_path)
    desk.config.write_text(
        '[store]\ndb = "triage.db"\n' + rules + '[sla]\npolicy = "controlup"\n', encoding="utf-8"
    )
    desk.replay("2026-03-12T12:00:00Z", customer(**FOLLOW_UP))
    assert_resumed_thursday(desk)
