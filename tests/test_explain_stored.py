"""`triage explain T-000123` and `triage explain --message KEY` work from what the database
and the bytes kept beside it hold, without the .eml file."""

from __future__ import annotations

import shutil
import sqlite3

from .test_first_response import OPENED, agent, customer
from .test_lifecycle import Desk


def said(done) -> str:
    return " ".join(done.output.split())


def test_explain_a_ticket_prints_each_messages_trace_and_its_events(tmp_path):
    desk = Desk(tmp_path)
    desk.replay(OPENED, customer())
    desk.replay("2026-03-10T09:40:00Z", agent())
    desk.run("ticket", "status", "T-000001", "resolved", "--by", "bob")
    out = said(desk.run("explain", "T-000001"))
    assert "T-000001 Printer on floor 2 is jammed" in out
    assert "message <q1@mail.acme.example> 2026-03-10T09:00:00Z jane@acme.example: ticket" in out
    assert "conversation: no reference to a stored message and no ticket token" in out
    assert "message <a1@triage.invalid> 2026-03-10T09:40:00Z bob@triage.invalid: append" in out
    assert "first response: recorded: our agent bob@triage.invalid" in out
    assert "first_response" in out and "status_changed from=open, to=resolved, by=bob" in out
    # the number alone works too
    assert "T-000001 Printer on floor 2 is jammed" in said(desk.run("explain", "1"))


def test_explain_a_stored_message_from_its_kept_bytes(tmp_path):
    desk = Desk(tmp_path)
    desk.replay(OPENED, customer())
    desk.replay("2026-03-10T09:40:00Z", agent())
    shutil.rmtree(tmp_path / "batch0")  # the .eml files are gone: only the database is left
    shutil.rmtree(tmp_path / "batch1")
    out = said(desk.run("explain", "--message", "<a1@triage.invalid>"))
    assert "stored at 2026-03-10T09:40:00Z as append (T-000001)" in out
    assert "subject Re: Printer on floor 2 is jammed [#T-000001]" in out
    assert "action append" in out
    assert "conversation: subject token T-000001, from our agent bob@triage.invalid" in out


def test_a_message_whose_bytes_are_not_kept_says_what_to_do(tmp_path):
    desk = Desk(tmp_path)
    desk.replay(OPENED, customer())
    with sqlite3.connect(desk.db) as conn:  # as a database written before bytes were kept
        conn.execute("DELETE FROM message_bytes")
    done = desk.run("explain", "--message", "<q1@mail.acme.example>", ok=False)
    assert done.exit_code == 1
    assert "the bytes of <q1@mail.acme.example> are not kept" in said(done)
    assert "fix: explain the .eml file itself" in said(done)


def test_unknown_ticket_message_and_missing_target_name_the_fix(tmp_path):
    desk = Desk(tmp_path)
    desk.replay(OPENED, customer())
    done = desk.run("explain", "T-000009", ok=False)
    assert done.exit_code == 1 and "no ticket T-000009" in said(done)
    done = desk.run("explain", "--message", "<nope@x>", ok=False)
    assert done.exit_code == 1 and "no stored message with key or Message-ID '<nope@x>'" in said(
        done
    )
    done = desk.run("explain", "missing.eml", ok=False)
    assert done.exit_code == 1 and "no such file, and not a ticket number" in said(done)
    done = desk.run("explain", ok=False)
    assert done.exit_code == 1 and "give one message" in said(done)


def test_small_messages_keep_their_bytes_in_the_database_large_ones_beside_it(tmp_path):
    from triage.store.messages import KEEP_IN_DB

    from .conftest import build

    desk = Desk(tmp_path)
    big_text = ("The log says:\n" + "x" * 70 + "\n") * (KEEP_IN_DB // 70 + 10)
    large = build(
        {
            "From": "Jane Doe <jane@acme.example>",
            "To": "support@triage.invalid",
            "Subject": "Crash log attached inline",
            "Date": "Tue, 10 Mar 2026 08:59:00 +0000",
            "Message-ID": "<big@mail.acme.example>",
        },
        big_text,
    )
    assert len(large) > KEEP_IN_DB
    out = desk.replay(OPENED, customer(), large)
    assert [d["action"] for d in out] == ["ticket", "ticket"]
    with sqlite3.connect(desk.db) as conn:
        kept = conn.execute("SELECT sha256, length(raw) FROM message_bytes").fetchall()
        sha_big = conn.execute(
            "SELECT sha256 FROM messages WHERE message_id = '<big@mail.acme.example>'"
        ).fetchone()[0]
    assert [n for _, n in kept] == [len(customer())]
    assert (tmp_path / "triage.db.files" / sha_big[:2] / sha_big).read_bytes() == large
    shown = said(desk.run("explain", "--message", "<big@mail.acme.example>"))
    assert "stored at 2026-03-10T09:00:00Z as ticket (T-000002)" in shown
