"""What people do to a ticket reaches the sinks: `ticket assign`, `ticket note`, `ticket
status` and a customer's reply that reopens a ticket queue `ticket.assigned`,
`ticket.noted` and `ticket.status_changed` in the change's transaction, and the drainer
sends them to real receivers on 127.0.0.1 (a signed webhook, a Slack webhook, the
ConnectWise stand-in)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from tests.support.connectwise_standin import (
    CLIENT_ID,
    COMPANY_ID,
    PRIVATE_KEY,
    PUBLIC_KEY,
    ConnectWiseStandIn,
)
from tests.support.http_receiver import HttpReceiver
from triage.cli import cli
from triage.config import load_config
from triage.core.pipeline import Rules, analyse
from triage.engine.batch import run_batch
from triage.sinks.events import Event
from triage.sinks.webhook import new_secret
from triage.store.sqlite import Store

from .conftest import human

NOW = datetime(2026, 3, 10, 9, 15, tzinfo=UTC)
SECRET = new_secret(b"k" * 32)
CHANGES = '["ticket.assigned", "ticket.noted", "ticket.status_changed"]'
REPLY = dict(
    From="Jane Doe <jane@acme.example>",
    Subject="Re: Printer on floor 2 is jammed",
    Message_ID="<reply1@mail.acme.example>",
    In_Reply_To="<abc123@mail.acme.example>",
    body="It is jammed again.\n",
)


def _mail(path: Path, raw: bytes, key: str) -> str | None:
    config = load_config(path)
    store = Store(config.db, config.ticket_prefix)
    rules = Rules.load(config)
    try:
        [d] = run_batch(store, rules, [analyse(raw, key, rules)], NOW, [raw])
    finally:
        store.close()
    return d.ticket


def _cli(path: Path, *args: str) -> str:
    done = CliRunner().invoke(cli, [*args, "--config", str(path)])
    assert done.exit_code == 0, done.output
    return done.output


def _life(path: Path) -> str:
    """A ticket assigned, noted, resolved, then reopened by the customer's reply."""
    number = _mail(path, human(), "m1")
    assert number
    _cli(path, "ticket", "assign", number, "alice", "--by", "lead", "--at", "2026-03-10T09:20:00Z")
    _cli(path, "ticket", "note", number, "Called Jane; toner.", "--by", "alice")
    _cli(path, "ticket", "status", number, "resolved", "--by", "alice")
    assert _mail(path, human(**REPLY), "m2") == number
    return number


def _rows(path: Path, sink: str) -> list[tuple[str, str, dict]]:
    with sqlite3.connect(load_config(path).db) as conn:
        rows = conn.execute(
            "SELECT event_type, status, event FROM deliveries WHERE sink = ? ORDER BY id", (sink,)
        ).fetchall()
    return [(t, s, json.loads(e)) for t, s, e in rows]


def test_webhook_and_slack_hear_assign_note_status_and_a_reopening_reply(tmp_path):
    (tmp_path / "hook.secret").write_text(SECRET + "\n")
    (tmp_path / "hook.secret").chmod(0o600)
    with HttpReceiver.start(secret=SECRET) as hook, HttpReceiver.start() as chat:
        (tmp_path / "chat.url").write_text(chat.url + "\n")
        path = tmp_path / "triage.toml"
        path.write_text(
            f'[store]\ndb = "{tmp_path / "t.db"}"\n\n'
            f'[[sink]]\nname = "hook"\nkind = "webhook"\nurl = "{hook.url}"\n'
            f'secret_file = "hook.secret"\nallow_insecure = true\nevents = {CHANGES}\n\n'
            '[[sink]]\nname = "oncall"\nkind = "slack"\nurl_file = "chat.url"\n'
            f"allow_insecure = true\nevents = {CHANGES}\n",
            encoding="utf-8",
        )
        number = _life(path)
        hook_rows = _rows(path, "hook")
        chat_rows = _rows(path, "oncall")
        assert "deliveries: 7 sent" in _cli(path, "outbox", "send", "--once")
    # every change is a row, queued with the change; the chat sink has none for "resolved"
    assert [(t, s) for t, s, _ in hook_rows] == [
        ("ticket.assigned", "pending"),
        ("ticket.noted", "pending"),
        ("ticket.status_changed", "pending"),
        ("ticket.status_changed", "pending"),
    ]
    assert [(t, e["data"].get("status")) for t, _, e in chat_rows] == [
        ("ticket.assigned", None),
        ("ticket.noted", None),
        ("ticket.status_changed", "open"),
    ]
    # the receiver gets the stored events' bytes, signed, in order
    assert all(r.verified for r in hook.requests)
    assert [r.body for r in hook.requests] == [
        Event.from_json(json.dumps(e)).body() for _, _, e in hook_rows
    ]
    got = [json.loads(r.body) for r in hook.requests]
    assert [g["type"] for g in got] == [t for t, _, _ in hook_rows]
    assigned, noted, resolved, reopened = (g["data"] for g in got)
    assert got[0]["timestamp"] == "2026-03-10T09:20:00Z"
    assert (assigned["ticket"], assigned["assignee"], assigned["previous_assignee"]) == (
        number,
        "alice",
        None,
    )
    assert assigned["by"] == "lead" and assigned["subject"] == "Printer on floor 2 is jammed"
    assert (noted["note"], noted["by"]) == ("Called Jane; toner.", "alice")
    assert (resolved["previous_status"], resolved["status"], resolved["by"]) == (
        "open",
        "resolved",
        "alice",
    )
    assert (reopened["previous_status"], reopened["status"], reopened["by"]) == (
        "resolved",
        "open",
        "jane@acme.example",
    )
    assert reopened["text"].strip() == "It is jammed again."
    slack = [r.json() for r in chat.requests]
    assert [s["blocks"][0]["text"]["text"] for s in slack] == [
        f"*{number} assigned to alice by lead: Printer on floor 2 is jammed*",
        f"*{number} has a note from alice: Printer on floor 2 is jammed*",
        f"*{number} is now open (was resolved) by jane@acme.example: Printer on floor 2 is jammed*",
    ]
    assert "*Note:* Called Jane; toner." in slack[1]["blocks"][1]["text"]["text"]


def test_connectwise_files_notes_and_state_changes_as_internal_notes(tmp_path, monkeypatch):
    with ConnectWiseStandIn.start() as cw:
        (tmp_path / "cw.key").write_text(PRIVATE_KEY + "\n")
        (tmp_path / "cw.key").chmod(0o600)
        monkeypatch.setenv("CW_PUBLIC", PUBLIC_KEY)
        path = tmp_path / "triage.toml"
        path.write_text(
            f'[store]\ndb = "{tmp_path / "t.db"}"\n\n[[sink]]\nname = "psa"\n'
            f'kind = "connectwise"\nsite = "{cw.site}"\nallow_insecure = true\n'
            f'company_id = "{COMPANY_ID}"\npublic_key_env = "CW_PUBLIC"\n'
            f'private_key_file = "cw.key"\nclient_id = "{CLIENT_ID}"\nboard = 1\n'
            'default_company = "Catchall"\nrate_limit = 100\n'
            'events = ["ticket.created", "ticket.noted", "ticket.status_changed"]\n',
            encoding="utf-8",
        )
        number = _life(path)
        rows = _rows(path, "psa")
        done = _cli(path, "outbox", "send", "--once")
        again = _cli(path, "outbox", "send", "--once")
    assert [t for t, _, _ in rows] == [
        "ticket.created",
        "ticket.noted",
        "ticket.status_changed",
        "ticket.status_changed",
    ]
    assert "deliveries: 4 sent" in done and "deliveries: 0 sent" in again
    [ticket] = cw.tickets.values()
    assert ticket["externalXRef"] == number
    _description, note, resolved, reopened = cw.notes[ticket["id"]]
    ids = [e["id"] for _, _, e in rows]
    assert note["text"].startswith("Note by alice:\n\nCalled Jane; toner.\n\n— triage ")
    assert resolved["text"].startswith("Status in triage: open -> resolved by alice\n")
    assert reopened["text"].startswith("Status in triage: resolved -> open by jane@acme.example\n")
    for made in (note, resolved, reopened):
        assert made["internalAnalysisFlag"] is True and "detailDescriptionFlag" not in made
    assert all(i.startswith("evt_") for i in ids)


def test_a_connectwise_sink_accepts_only_what_it_maps(tmp_path):
    path = tmp_path / "triage.toml"
    path.write_text(
        '[[sink]]\nname = "psa"\nkind = "connectwise"\nsite = "cw.example.com"\n'
        'company_id = "x"\npublic_key = "p"\nprivate_key_env = "K"\nclient_id = "c"\n'
        'board = 1\ndefault_company = "C"\nevents = ["ticket.assigned"]\n',
        encoding="utf-8",
    )
    done = CliRunner().invoke(cli, ["check", "--config", str(path)])
    assert done.exit_code != 0
    assert "does nothing with 'ticket.assigned'" in done.output
