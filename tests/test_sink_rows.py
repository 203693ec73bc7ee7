"""[[sink]] tables read by the config loader, and delivery rows written in the transaction of
the change that caused them: one per (event, sink), filtered by what each sink subscribes to."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from triage.cli import cli
from triage.config import ConfigError, load_config
from triage.core.pipeline import Rules, analyse
from triage.engine.batch import run_batch, write_batch
from triage.sinks.events import Event, delivery_id
from triage.store import deliveries
from triage.store.sqlite import Store

from .conftest import human

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

SINKS = """
[[sink]]
name = "hook"
kind = "webhook"
url = "https://hooks.example.com/triage"
secret_file = "hook.secret"
events = ["ticket.created", "ticket.appended", "message.quarantined", "sla.breached"]

[[sink]]
name = "oncall"
kind = "slack"
url_file = "slack.url"
events = ["ticket.created", "sla.warning", "sla.breached"]
priorities = ["P1"]
vip = "also"
"""


def write_config(tmp_path: Path, text: str = SINKS) -> Path:
    (tmp_path / "hook.secret").write_text(SECRET + "\n")
    (tmp_path / "slack.url").write_text("https://hooks.slack.com/services/T0/B0/x\n")
    for name in ("hook.secret", "slack.url"):
        (tmp_path / name).chmod(0o600)
    path = tmp_path / "triage.toml"
    path.write_text(f'[store]\ndb = "{tmp_path / "t.db"}"\n' + text)
    return path


def pipeline(tmp_path: Path, text: str = SINKS, store: Store | None = None) -> tuple[Rules, Store]:
    """The rules of the sinks' config, and `store` (the conftest fixture: SQLite or
    PostgreSQL) or the SQLite database the config names."""
    config = load_config(write_config(tmp_path, text))
    return Rules.load(config), store or Store(config.db, config.ticket_prefix)


def rows(store: Store) -> list[dict]:
    return list(store.db.query("SELECT * FROM deliveries ORDER BY id"))


def test_config_reads_sinks(tmp_path):
    config = load_config(write_config(tmp_path))
    assert [(s.name, s.kind) for s in config.sinks] == [("hook", "webhook"), ("oncall", "slack")]
    assert load_config(None).sinks == ()


def test_config_refuses_a_broken_sink_naming_file_and_key(tmp_path):
    path = write_config(tmp_path, SINKS.replace('kind = "slack"', 'kind = "pager"'))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "sink[1].kind" in str(info.value) and str(path) in str(info.value)


def test_check_lists_sinks_and_refuses_an_email_sink_without_smtp(tmp_path):
    done = CliRunner().invoke(cli, ["check", "--config", str(write_config(tmp_path))])
    assert done.exit_code == 0, done.output
    assert "sink     hook: webhook to https://hooks.example.com/triage" in done.output
    mail = '\n[[sink]]\nname = "mail"\nkind = "email"\nto = ["oncall@msp.example"]\nevents = ["sla.breached"]\n'
    done = CliRunner().invoke(cli, ["check", "--config", str(write_config(tmp_path, SINKS + mail))])
    assert done.exit_code != 0
    assert "sink[2]" in done.output and "[smtp]" in done.output


def test_check_refuses_a_secret_file_open_to_everyone(tmp_path):
    path = write_config(tmp_path)
    (tmp_path / "slack.url").chmod(0o644)
    done = CliRunner().invoke(cli, ["check", "--config", str(path)])
    assert done.exit_code != 0 and "sink[1].url_file" in done.output and "chmod 0600" in done.output


def test_check_refuses_an_unreadable_webhook_secret(tmp_path):
    path = write_config(tmp_path)
    (tmp_path / "hook.secret").write_text("not-a-secret\n")
    done = CliRunner().invoke(cli, ["check", "--config", str(path)])
    assert done.exit_code != 0
    assert "sink[0].secret_file" in done.output and "whsec_" in done.output


def test_a_ticket_and_its_deliveries_commit_together(tmp_path, store):
    rules, store = pipeline(tmp_path, store=store)
    raw = human(Subject="Server is down", From="Dana <dana@acme.example>")
    [d] = run_batch(store, rules, [analyse(raw, "m1", rules)], NOW, [raw])
    got = rows(store)
    # the webhook takes every ticket; the on-call channel only P1 (or VIP)
    assert {r["sink"] for r in got} == {"hook"} | ({"oncall"} if d.priority == "P1" else set())
    hook = next(r for r in got if r["sink"] == "hook")
    assert hook["status"] == "pending" and hook["ticket"] == d.ticket
    assert hook["delivery_id"] == delivery_id(hook["event_id"], "hook")
    event = Event.from_json(hook["event"])
    assert event.type == "ticket.created" and event.at == NOW
    assert event.data["subject"] == "Server is down"
    assert event.data["requester"] == "dana@acme.example"
    assert event.data["priority"] == d.priority
    assert event.data["reasons"] == list(d.reasons)
    assert "printer is jammed" in event.data["text"]


def test_no_ticket_without_its_delivery_rows_and_no_rows_without_the_ticket(tmp_path):
    """The rows are written in the batch's transaction: a batch rolled back (the process
    killed before the commit) leaves neither the ticket nor its deliveries."""
    rules, store = pipeline(tmp_path)
    raw = human()
    write_batch(store, rules, [analyse(raw, "m1", rules)], NOW, [raw])
    other = sqlite3.connect(tmp_path / "t.db")  # another process's view, before the commit
    assert other.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 0
    store.rollback()
    assert store.conn.execute("SELECT COUNT(*) FROM tickets").fetchone()[0] == 0
    assert rows(store) == []
    write_batch(store, rules, [analyse(raw, "m1", rules)], NOW, [raw])
    store.commit()
    assert other.execute("SELECT COUNT(*) FROM tickets").fetchone()[0] == 1
    assert other.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 1


def test_an_append_queues_ticket_appended_with_the_tickets_fields(tmp_path, store):
    rules, store = pipeline(tmp_path, store=store)
    first = human()
    reply = human(
        Subject="Re: Printer on floor 2 is jammed",
        Message_ID="<reply1@mail.acme.example>",
        In_Reply_To="<abc123@mail.acme.example>",
        body="Still jammed.\n",
    )
    [d1] = run_batch(store, rules, [analyse(first, "m1", rules)], NOW, [first])
    [d2] = run_batch(store, rules, [analyse(reply, "m2", rules)], NOW, [reply])
    assert str(d2.action) == "append" and d2.ticket == d1.ticket
    appended = [r for r in rows(store) if r["event_type"] == "ticket.appended"]
    assert [r["sink"] for r in appended] == ["hook"]
    event = Event.from_json(appended[0]["event"])
    assert event.data["ticket"] == d1.ticket
    assert event.data["subject"] == "Printer on floor 2 is jammed"  # the ticket's, not the reply's
    assert event.data["action"] == "append"
    assert event.data["message_id"] == "<reply1@mail.acme.example>"
    assert event.data["text"].startswith("Still jammed.")


def test_a_duplicate_queues_nothing_and_a_filtered_message_nothing(tmp_path, store):
    rules, store = pipeline(tmp_path, store=store)
    raw = human()
    run_batch(store, rules, [analyse(raw, "m1", rules)], NOW, [raw])
    run_batch(store, rules, [analyse(raw, "m1-again", rules)], NOW, [raw])
    bounce = human(From="MAILER-DAEMON@mx.example", Subject="Undelivered Mail Returned to Sender")
    run_batch(store, rules, [analyse(bounce, "m2", rules)], NOW, [bounce])
    assert [r["event_type"] for r in rows(store)] == ["ticket.created"]


def test_a_quarantined_message_queues_message_quarantined(tmp_path, store):
    rules, store = pipeline(tmp_path, store=store)
    raw = b"\x00\x01 not mail at all"
    [d] = run_batch(store, rules, [analyse(raw, "junk.eml", rules)], NOW, [raw])
    assert str(d.action) == "quarantined"
    [row] = rows(store)
    event = Event.from_json(row["event"])
    assert (row["sink"], event.type, event.data["source"]) == (
        "hook",
        "message.quarantined",
        "junk.eml",
    )


def test_sla_breach_queues_deliveries_in_the_checks_transaction_once(tmp_path, store):
    from triage.core import sla as sla_mod
    from triage.service import tracking

    rules, store = pipeline(tmp_path, store=store)
    raw = human(Subject="Server is down")
    [d] = run_batch(store, rules, [analyse(raw, "m1", rules)], NOW, [raw])
    policies = sla_mod.load_policies(rules.config.sla_dir)
    later = d.due + timedelta(minutes=1)
    tracking.check(store, policies, later, sinks=rules.config.sinks)
    tracking.check(store, policies, later + timedelta(hours=1), sinks=rules.config.sinks)
    breached = [r for r in rows(store) if r["event_type"] == "sla.breached"]
    # the webhook always; the on-call channel because the ticket is P1
    assert sorted(r["sink"] for r in breached) == sorted(
        ["hook"] + (["oncall"] if d.priority == "P1" else [])
    )
    event = Event.from_json(breached[0]["event"])
    assert event.data["ticket"] == d.ticket and event.data["sla"] == "respond"
    assert event.data["due"] == d.due.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_no_sinks_no_rows(tmp_path, store):
    rules, store = pipeline(tmp_path, "", store=store)
    raw = human()
    run_batch(store, rules, [analyse(raw, "m1", rules)], NOW, [raw])
    assert rows(store) == []


def test_rows_queue_one_per_event_and_sink(tmp_path, store):
    """INSERT OR IGNORE on (event, sink): queueing the same event again adds nothing."""
    rules, store = pipeline(tmp_path, store=store)
    event = Event.quarantined("evt_1", NOW, source="x.eml", message_id=None, error="bad")
    assert deliveries.queue(store.conn, rules.config.sinks, event, NOW) == 1
    deliveries.queue(store.conn, rules.config.sinks, event, NOW)
    assert len(rows(store)) == 1
    assert json.loads(rows(store)[0]["event"])["id"] == "evt_1"


def test_replay_queues_rows_that_nothing_sends_and_writes_them_to_sinks_dir(tmp_path):
    from .conftest import ROOT

    path = write_config(tmp_path)
    fixtures = ROOT / "fixtures" / "emails"
    files = [
        str(fixtures / "01-plain-text-request.eml"),
        str(fixtures / "12-severity1-subject.eml"),
    ]
    out = tmp_path / "sinks"
    done = CliRunner().invoke(
        cli,
        ["replay", "--config", str(path), "--now", "2026-03-10T14:30:00Z"]
        + ["--sinks-dir", str(out), *files],
    )
    assert done.exit_code == 0, done.output
    store = Store(tmp_path / "t.db")
    got = rows(store)
    assert got and {r["status"] for r in got} == {"replay"}
    written = sorted(p.name for p in out.iterdir())
    assert len(written) == len(got)
    hook = next(p for p in sorted(out.iterdir()) if "-hook-" in p.name)
    head, _, body = hook.read_bytes().partition(b"\n\n")
    assert head.startswith(b"POST https://hooks.example.com/triage\n")
    row = next(r for r in got if r["sink"] == "hook")
    assert f"webhook-id: {row['delivery_id']}".encode() in head
    # the very bytes the webhook would sign and send
    assert body.rstrip(b"\n") == Event.from_json(row["event"]).body()
    # `outbox send --once` sends none of them
    sent = CliRunner().invoke(cli, ["outbox", "send", "--once", "--config", str(path)])
    assert sent.exit_code == 0, sent.output
    assert "deliveries: 0 sent" in sent.output
    assert {r["status"] for r in rows(store)} == {"replay"}
