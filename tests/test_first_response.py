"""First responses recorded from the mail itself: an agent's reply to the requester that
passes through the watched mailbox (replayed here) answers the ticket, once; a customer's
own follow-up does not, nor does a From in our domain that fails authentication.

The default identity is ours: domain triage.invalid, support@triage.invalid. Our boundary's
verdict is the topmost Authentication-Results header (no authserv_ids configured).
"""

from __future__ import annotations

import json
import sqlite3

from .conftest import build
from .test_lifecycle import Desk

OPENED = "2026-03-10T09:00:00Z"
ANSWERED = "2026-03-10T09:40:00Z"
PASS = "mx.triage.invalid; dmarc=pass (p=reject) header.from=triage.invalid"
FAIL = "mx.triage.invalid; dmarc=fail (p=reject) header.from=triage.invalid"


def customer(**over: str) -> bytes:
    headers = {
        "From": "Jane Doe <jane@acme.example>",
        "To": "support@triage.invalid",
        "Subject": "Printer on floor 2 is jammed",
        "Date": "Tue, 10 Mar 2026 08:59:00 +0000",
        "Message-ID": "<q1@mail.acme.example>",
    }
    headers.update(over)
    return build(headers, "Hello,\nthe printer is jammed again.\nJane\n")


def agent(auth: str | None = PASS, n: int = 1, **over: str) -> bytes:
    headers = {
        "From": "Bob Agent <bob@triage.invalid>",
        "To": "jane@acme.example",
        "Cc": "support@triage.invalid",
        "Subject": "Re: Printer on floor 2 is jammed [#T-000001]",
        "Date": "Tue, 10 Mar 2026 09:39:00 +0000",
        "Message-ID": f"<a{n}@triage.invalid>",
    }
    if auth:
        headers = {"Authentication-Results": auth, **headers}
    headers.update(over)
    return build(headers, "Hi Jane,\nwe are on it; a technician comes at 11.\nBob\n")


def ticket(desk: Desk, number: str = "T-000001") -> dict:
    with sqlite3.connect(desk.db) as conn:
        conn.row_factory = sqlite3.Row
        return dict(conn.execute("SELECT * FROM tickets WHERE number = ?", (number,)).fetchone())


def first_responses(desk: Desk) -> list[tuple[str, dict]]:
    with sqlite3.connect(desk.db) as conn:
        rows = conn.execute(
            "SELECT at, detail FROM events WHERE kind = 'first_response' ORDER BY id"
        ).fetchall()
    return [(at, json.loads(d)) for at, d in rows]


def test_an_agents_reply_with_the_ticket_token_records_the_first_response(tmp_path):
    desk = Desk(tmp_path)
    (opened,) = desk.replay(OPENED, customer())
    assert opened["ticket"] == "T-000001"
    (reply,) = desk.replay(ANSWERED, agent())
    assert (reply["action"], reply["ticket"]) == ("append", "T-000001")
    assert ticket(desk)["first_response_at"] == ANSWERED
    assert first_responses(desk) == [
        (
            ANSWERED,
            {
                "due": ticket(desk)["response_due"],
                "within_target": True,
                "by": "bob@triage.invalid",
                "from_mail": True,
            },
        )
    ]
    # a second answer keeps the first: never overwritten, no second event
    desk.replay("2026-03-10T10:30:00Z", agent(n=2))
    assert ticket(desk)["first_response_at"] == ANSWERED
    assert len(first_responses(desk)) == 1
    # `triage sla check` no longer breaches it
    check = desk.run("sla", "check", "--now", "2026-03-13T12:00:00Z", ok=False)
    assert "0 sla_breached written" in check.stdout


def test_explain_says_the_reply_is_the_first_response(tmp_path):
    desk = Desk(tmp_path)
    desk.replay(OPENED, customer())
    (tmp_path / "reply.eml").write_bytes(agent())
    out = " ".join(
        desk.run("explain", "--db", str(desk.db), str(tmp_path / "reply.eml")).stdout.split()
    )
    assert "first response: recorded: our agent bob@triage.invalid answered the requester" in out


def test_a_customers_own_follow_up_is_no_response(tmp_path):
    desk = Desk(tmp_path)
    desk.replay(OPENED, customer())
    follow = customer(
        **{
            "Message-ID": "<q2@mail.acme.example>",
            "In-Reply-To": "<q1@mail.acme.example>",
            "Subject": "Re: Printer on floor 2 is jammed",
        }
    )
    (out,) = desk.replay(ANSWERED, follow)
    assert out["action"] == "append"
    assert ticket(desk)["first_response_at"] is None
    assert first_responses(desk) == []


def test_a_forged_from_in_our_domain_that_fails_authentication_does_not_count(tmp_path):
    desk = Desk(tmp_path)
    desk.replay(OPENED, customer())
    (out,) = desk.replay(ANSWERED, agent(auth=FAIL))
    assert out["action"] == "ticket" and out["linked_ticket"] == "T-000001"
    assert ticket(desk)["first_response_at"] is None
    assert first_responses(desk) == []


def test_our_domain_without_authentication_is_not_counted_and_explain_says_why(tmp_path):
    desk = Desk(tmp_path)
    desk.replay(OPENED, customer())
    (tmp_path / "reply.eml").write_bytes(agent(auth=None))
    out = " ".join(
        desk.run("explain", "--db", str(desk.db), str(tmp_path / "reply.eml")).stdout.split()
    )
    assert "first response: not counted: bob@triage.invalid writes as one of ours" in out
    desk.replay(ANSWERED, agent(auth=None))
    assert ticket(desk)["first_response_at"] is None


def test_an_agents_mail_not_addressed_to_the_requester_is_no_response(tmp_path):
    desk = Desk(tmp_path)
    desk.replay(OPENED, customer())
    internal = agent(**{"To": "carol@triage.invalid", "Cc": "support@triage.invalid"})
    (out,) = desk.replay(ANSWERED, internal)
    assert out["action"] == "append"
    assert ticket(desk)["first_response_at"] is None
