"""The review flow end to end: replay, list, release, status, digest; and through the daemon."""

from __future__ import annotations

import email
import json
import os
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from . import servers
from .conftest import FIXTURES, ROOT

NOW = "2026-03-10T14:30:00Z"
BAKERY = FIXTURES / "38-sow-from-info-small-business.eml"
NEWSLETTER = FIXTURES / "66-sow-from-info-newsletter.eml"


def triage(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "triage.cli", "--log-level", "warning", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"triage {' '.join(args)} exited {proc.returncode}\n{proc.stderr}")
    return proc


@pytest.fixture
def replayed(tmp_path) -> Path:
    """The bakery's mail and an info@ newsletter replayed into a database."""
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "1.eml").write_bytes(BAKERY.read_bytes())
    (folder / "2.eml").write_bytes(NEWSLETTER.read_bytes())
    db = tmp_path / "triage.db"
    out = [
        json.loads(x)
        for x in triage(
            "replay", "--db", str(db), "--json", "--now", NOW, str(folder)
        ).stdout.splitlines()
    ]
    assert [(o["action"], o["reason"], o["ticket"], o["auto_reply"]) for o in out] == [
        ("review", "sow-from-info", None, False),
        ("filtered", "sow-from-info", None, False),
    ]
    assert {e["name"] for e in out[0]["evidence"]} == {
        "rule:sow-from-info",
        "mail-client",
        "greeting",
        "signature",
    }
    return db


def rows(db: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def test_review_lists_counts_and_releases_into_a_ticket_due_from_arrival(replayed):
    db = str(replayed)
    assert rows(replayed, "SELECT COUNT(*) FROM tickets") == [(0,)]
    assert rows(replayed, "SELECT COUNT(*) FROM outbox") == [(0,)]
    [held] = [json.loads(x) for x in triage("review", "--db", db, "--json").stdout.splitlines()]
    assert (held["from"], held["reason"], held["received_at"]) == (
        "info@delgado-bakery.example",
        "sow-from-info",
        NOW,
    )
    assert {(e["side"], e["name"]) for e in held["evidence"]} >= {("person", "greeting")}
    table = triage("review", "--db", db).stdout
    assert "Card reader" in table and "sow-from-info" in table
    status = triage("status", "--db", db, "--json", check=False)
    assert (status.returncode, json.loads(status.stdout)["review"]) == (1, 1)  # a warning
    assert "held for review: 1" in triage("status", "--db", db, check=False).stdout

    # released an hour later: the deadline is the one it would have had on arrival
    out = triage(
        "review",
        "release",
        held["release"].split()[-1],
        "--db",
        db,
        "--now",
        "2026-03-10T15:30:00Z",
    ).stdout
    assert "ticket T-000001" in out and "acknowledgement queued" in out
    [(number, status, created, due)] = rows(
        replayed, "SELECT number, status, created_at, response_due FROM tickets"
    )
    direct = json.loads(
        triage(
            "replay",
            "--dry-run",
            "--json",
            "--now",
            NOW,
            str(FIXTURES / "11-unknown-sender-gmail.eml"),
        ).stdout
    )
    assert (number, status, created) == ("T-000001", "open", NOW)
    assert due == direct["due"]  # the same policy, plan and priority, from the same instant
    [(to, subject, state, raw)] = rows(replayed, "SELECT to_addr, subject, status, raw FROM outbox")
    assert (to, subject, state) == (
        "info@delgado-bakery.example",
        "[#T-000001] Card reader at the front counter keeps disconnecting",
        "pending",
    )
    assert email.message_from_string(raw)["In-Reply-To"] == held["message_id"]
    assert [
        k for (k,) in rows(replayed, "SELECT kind FROM events WHERE ticket_id = 1 ORDER BY id")
    ] == [
        "created",
        "auto_reply_queued",
        "released",
    ]
    assert rows(replayed, "SELECT action FROM messages ORDER BY id") == [("filtered",), ("ticket",)]
    released = triage("status", "--db", db, "--json", check=False)
    assert json.loads(released.stdout)["review"] == 0
    again = triage("review", "release", held["key"], "--db", db, check=False)
    assert again.returncode != 0 and "triage review" in again.stderr
    # replaying the same file again is a duplicate, not a second ticket
    out = json.loads(triage("replay", "--db", db, "--json", "--now", NOW, str(BAKERY)).stdout)
    assert out["action"] == "duplicate"


def test_the_digest_is_printed_by_hand_and_queued_once_for_the_operator(replayed, tmp_path):
    db = str(replayed)
    printed = triage("review", "digest", "--db", db, "--now", "2026-03-11T08:00:00Z").stdout
    assert "1 message(s) wait for review (1 new)" in printed
    assert "info@delgado-bakery.example" in printed and "triage review release" in printed
    assert rows(replayed, "SELECT COUNT(*) FROM outbox") == [(0,)]  # printing sends nothing
    refused = triage("review", "digest", "--send", "--db", db, check=False)
    assert (
        refused.returncode != 0
        and "[daemon.operator]" in refused.stderr
        and "fix:" in refused.stderr
    )
    config = tmp_path / "triage.toml"
    config.write_text(f'[store]\ndb = "{db}"\n[daemon]\noperator = "ops@msp.example"\n')
    triage("review", "digest", "--send", "--config", str(config), "--now", "2026-03-11T08:00:00Z")
    [(to, subject, mid, raw)] = rows(
        replayed, "SELECT to_addr, subject, message_id, raw FROM outbox"
    )
    assert (to, subject) == ("ops@msp.example", "triage: 1 message(s) wait for review (1 new)")
    message = email.message_from_string(raw)
    assert message["Auto-Submitted"] == "auto-generated" and message["Message-ID"] == mid


def test_the_cli_examples_of_the_review_commands_run(replayed, tmp_path):
    """Each review command's Example, run as written against a database named triage.db."""
    from click.testing import CliRunner

    from triage.cli import cli

    work = replayed.parent  # the examples name ./triage.db
    runner = CliRunner()
    for path in (("review",), ("review", "digest"), ("review", "release")):
        help_text = runner.invoke(cli, [*path, "--help"]).output
        example = help_text.split("Example:")[1].strip().splitlines()[0].strip()
        args = shlex.split(example)[1:]
        if path[-1] == "release":
            args[2] = str(
                rows(work / "triage.db", "SELECT id FROM messages WHERE action = 'review'")[0][0]
            )
        done = subprocess.run(
            [sys.executable, "-m", "triage.cli", *args],
            cwd=work,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, (example, done.stderr)


@pytest.mark.skipif(servers.skip_reason() is not None, reason=servers.skip_reason() or "")
def test_the_daemon_files_review_mail_in_its_folder_and_mails_the_digest(tmp_path, make_smtp_sink):
    from tests.support.daemon import Daemon, wait_for

    sink = make_smtp_sink()
    imap = servers.Dovecot.start(tmp_path / "dovecot")
    d = None
    try:
        servers.append(imap, "support", "INBOX", BAKERY.read_bytes())
        servers.append(imap, "support", "INBOX", NEWSLETTER.read_bytes())
        d = Daemon(
            tmp_path,
            imap,
            daemon={"operator": "ops@msp.example", "sla_check_seconds": 0.5, "outbox_seconds": 0.5},
            extra=f'[smtp]\nhost = "127.0.0.1"\nport = {sink.port}\ntls = "none"\nallow_insecure = true\n',
        ).start()
        wait_for(lambda: d.count("INBOX") == 0, 30, "INBOX to empty")
        assert (
            d.count("Triage/Review"),
            d.count("Triage/Filtered"),
            d.count("Triage/Processed"),
        ) == (1, 1, 0)
        [(mail_from, rcpts, raw)] = sink.wait_for(1, timeout=30)
        digest = email.message_from_bytes(raw)
        assert rcpts == ["ops@msp.example"]
        assert digest["Subject"] == "triage: 1 message(s) wait for review (1 new)"
        assert "Card reader at the front counter" in digest.get_payload()
        assert d.scalar("SELECT status FROM outbox WHERE to_addr = 'ops@msp.example'") == "sent"
        # once a day: later checks of the timer queue no second digest
        wait_for(lambda: len(d.logged("review_digest_queued")) >= 1, 10, "the digest log line")
        import time

        time.sleep(1.5)
        assert len(sink.messages()) == 1
        assert d.stop() == 0
        # the held message is released from its kept bytes, without the mailbox
        d.cli("review", "release", str(d.scalar("SELECT id FROM messages WHERE action = 'review'")))
        assert d.scalar("SELECT COUNT(*) FROM tickets") == 1
    finally:
        if d is not None and d.proc is not None and d.proc.poll() is None:
            d.kill()
        imap.stop()
