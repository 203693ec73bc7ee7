"""`triage status` for people and for monitors: exit 0 ok, 1 warning, 2 critical, 3 unknown."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from triage.cli import cli
from triage.service import monitoring
from triage.store import reloads
from triage.store.sqlite import Store

from .conftest import build

TUE_0900 = "2026-03-10T09:00:00Z"  # P1 on the default policy: due 11:00 the same day


@pytest.mark.parametrize(
    ("facts", "code", "line"),
    [
        ({}, 0, "OK"),
        ({"at_risk": 1}, 1, "WARNING: 1 ticket at risk"),
        ({"outbox": {"failed": 2}}, 1, "WARNING: 2 outbox rows failed"),
        (
            {"reload_rejected": "filters.toml: bad"},
            1,
            "WARNING: reload rejected: filters.toml: bad",
        ),
        ({"breached": 3, "at_risk": 1}, 2, "CRITICAL: 3 tickets breached; 1 ticket at risk"),
        (
            {"mailboxes": [{"mailbox": "support", "failing": 1}]},
            2,
            "CRITICAL: mailbox support failing",
        ),
        ({"mailboxes": [{"mailbox": "support", "failing": 0}]}, 0, "OK"),
        ({"relay": {"failing": True, "kind": "auth"}}, 2, "CRITICAL: relay failing (auth)"),
        ({"relay": {"failing": False}}, 0, "OK"),
        ({"review": 2}, 1, "WARNING: 2 messages held for review"),
    ],
)
def test_status_verdict(facts, code, line):
    verdict = monitoring.status_verdict(
        facts.get("mailboxes", []),
        facts.get("outbox", {"pending": 4}),
        facts.get("at_risk", 0),
        facts.get("breached", 0),
        facts.get("reload_rejected"),
        relay=facts.get("relay"),
        review=facts.get("review", 0),
    )
    assert (verdict.code, verdict.line()) == (code, line)


class Desk:
    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.db = tmp_path / "triage.db"
        self.config = tmp_path / "triage.toml"
        self.config.write_text(f'[store]\ndb = "{self.db}"\n', encoding="utf-8")

    def run(self, *args: str):
        return CliRunner().invoke(cli, [*args, "--config", str(self.config)])

    def status(self, now: str) -> tuple[int, dict]:
        result = self.run("status", "--json", "--now", now)
        return result.exit_code, json.loads(result.stdout)

    def sql(self, statement: str, *args: object) -> None:
        with sqlite3.connect(self.db) as conn:
            conn.execute(statement, args)


@pytest.fixture
def desk(tmp_path: Path) -> Desk:
    desk = Desk(tmp_path)
    mail = tmp_path / "p1.eml"
    mail.write_bytes(
        build(
            {
                "From": "User <user@acme.example>",
                "To": "support@triage.invalid",
                "Subject": "URGENT: server down",
                "Message-ID": "<p1@acme.example>",
            }
        )
    )
    assert desk.run("replay", "--now", TUE_0900, str(mail)).exit_code == 0
    return desk


def test_status_exits_by_the_worst_thing_it_shows(desk):
    code, shown = desk.status("2026-03-10T10:00:00Z")
    assert (code, shown["verdict"]["state"]) == (0, "ok")
    code, shown = desk.status("2026-03-10T10:45:00Z")
    assert (code, shown["at_risk"], shown["verdict"]["reasons"]) == (
        1,
        ["T-000001"],
        ["1 ticket at risk"],
    )
    code, shown = desk.status("2026-03-10T11:01:00Z")
    assert (code, shown["breached"]) == (2, ["T-000001"])
    desk.sql("UPDATE tickets SET first_response_at = '2026-03-10T10:30:00Z'")
    desk.sql("UPDATE outbox SET status = 'failed', last_error = '550 no such user'")
    code, shown = desk.status("2026-03-10T11:01:00Z")
    assert (code, shown["verdict"]["reasons"]) == (1, ["1 outbox row failed"])
    desk.sql(
        "INSERT INTO mailbox_state (mailbox, failing, last_error) VALUES ('support', 1, 'login refused')"
    )
    code, shown = desk.status("2026-03-10T11:01:00Z")
    assert (code, shown["verdict"]["reasons"][0]) == (2, "mailbox support failing")


def test_status_text_ends_with_the_verdict(desk):
    result = desk.run("status", "--now", "2026-03-10T11:01:00Z")
    assert result.exit_code == 2
    assert result.stdout.rstrip().splitlines()[-1] == "CRITICAL: 1 ticket breached"


def test_status_that_cannot_tell_exits_3(tmp_path):
    desk = Desk(tmp_path)
    result = desk.run("status")
    assert result.exit_code == 3 and "no database here" in result.output
    assert desk.run("status", "--bogus").exit_code == 3


def test_status_shows_a_rejected_reload_until_a_reload_or_restart_succeeds(desk):
    store = Store(desk.db)
    reloads.record(store, reloads.STARTED)
    reloads.record(store, reloads.REJECTED, "rules/filters.toml: line 3: bad rule\n  fix: ...")
    code, shown = desk.status("2026-03-10T10:00:00Z")
    assert code == 1
    assert shown["reload_rejected"]["error"].startswith("rules/filters.toml: line 3")
    text = desk.run("status", "--now", "2026-03-10T10:00:00Z").stdout
    assert "reload rejected at" in text and "rules/filters.toml: line 3: bad rule" in text
    reloads.record(store, reloads.RELOADED)
    store.close()
    code, shown = desk.status("2026-03-10T10:00:00Z")
    assert (code, shown["reload_rejected"]) == (0, None)


def test_status_is_critical_while_the_relay_fails_and_warns_of_mail_held_for_review(desk):
    desk.sql(
        "CREATE TABLE IF NOT EXISTS relay_state (relay TEXT PRIMARY KEY, failing INTEGER,"
        " failing_since TEXT, failures INTEGER, kind TEXT, last_error TEXT, last_ok_at TEXT,"
        " updated_at TEXT)"
    )
    desk.sql(
        "INSERT OR REPLACE INTO relay_state (relay, failing, kind, last_error)"
        " VALUES ('smtp', 1, 'auth', '535 5.7.8')"
    )
    code, shown = desk.status("2026-03-10T10:00:00Z")
    assert (code, shown["verdict"]["reasons"]) == (2, ["relay failing (auth)"])
