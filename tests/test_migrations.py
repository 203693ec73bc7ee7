"""Databases written by earlier releases open with today's code: migrated once, nothing lost.

tests/data/releases/<commit>.db were written by each release's own code
(tests/data/releases/make.py): the demo's contacts, fixtures/emails replayed, one
acknowledgement sent, one mailbox's UID state.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlite_utils
from click.testing import CliRunner

from triage.cli import cli
from triage.store import migrations
from triage.store.desk import fts
from triage.store.sqlite import Store

from .conftest import ROOT, build

RELEASES = Path(__file__).parent / "data" / "releases"
LAST, OLDER = "9e44bdc", "21db78d"
NOW = "2026-03-10T14:30:00Z"
TABLES = ("tickets", "messages", "events", "outbox", "attachments", "contacts", "bounces")
LINKS = {  # (table, column) -> (table, column): what Datasette and sqlite-utils show
    ("messages", "ticket_id"): ("tickets", "id"),
    ("events", "ticket_id"): ("tickets", "id"),
    ("outbox", "ticket_id"): ("tickets", "id"),
    ("bounces", "ticket_id"): ("tickets", "id"),
    ("bounces", "message_key"): ("messages", "message_key"),
    ("attachments", "message_key"): ("messages", "message_key"),
}


def release_copy(tmp_path: Path, commit: str) -> Path:
    path = tmp_path / f"{commit}.db"
    shutil.copyfile(RELEASES / f"{commit}.db", path)
    return path


def rows(path: Path, table: str) -> list[dict]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY rowid")]
    finally:
        conn.close()


def pragma(path: Path, name: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchall()
    finally:
        conn.close()


EXPRESSION = "(expression)"


def shape(path: Path) -> dict:
    """Tables, columns, primary keys, foreign keys and indexes, as sqlite-utils sees them."""
    db = sqlite_utils.Database(path)
    try:
        return {
            t.name: (
                t.columns_dict,
                t.pks,
                sorted((fk.column, fk.other_table, fk.other_column) for fk in t.foreign_keys),
                # an index's expression (schema.RESPONSE_OUTCOME) has no column name
                sorted(
                    (tuple(c or EXPRESSION for c in i.columns), bool(i.unique)) for i in t.indexes
                ),
            )
            for t in db.tables
        }
    finally:
        db.close()


def invoke(*args: str, codes: tuple[int, ...] = (0,)) -> str:
    result = CliRunner().invoke(cli, ["--log-level", "warning", *args], catch_exceptions=False)
    assert result.exit_code in codes, result.output
    return result.stdout


@pytest.mark.parametrize("commit", [LAST, OLDER])
def test_a_release_database_keeps_every_row_and_gains_the_latest_schema(tmp_path, commit):
    db = release_copy(tmp_path, commit)
    before = {t: rows(db, t) for t in TABLES}
    indexes = {t: i for t, (_, _, _, i) in shape(db).items()}
    assert pragma(db, "user_version") == [(0,)]

    Store(db).close()

    assert pragma(db, "user_version") == [(migrations.LATEST,)]
    assert pragma(db, "foreign_key_check") == []
    for table, old in before.items():
        new = rows(db, table)
        # Same rows, same ids, same values; columns added since are empty.
        assert [{k: r[k] for k in o} for r, o in zip(new, old, strict=True)] == old, table
    assert {
        (t, fk[0]): (fk[1], fk[2]) for t, (_, _, fks, _) in shape(db).items() for fk in fks
    } == LINKS
    # Rebuilt tables keep their indexes; only the release's duplicate one is gone, and
    # migrations 10 and 12 add those a store with years in it reads by.
    indexes["outbox"].remove((("to_addr", "created_at"), False))
    for table, columns in YEARS_INDEXES:
        indexes[table] = sorted([*indexes[table], (columns, False)])
    assert {t: i for t, (_, _, _, i) in shape(db).items() if t in indexes} == indexes


YEARS_INDEXES = (  # migration 10's (tickets_open is partial: the open tickets only) and 12's
    ("tickets", ("id",)),
    (  # 12's, led by the response outcome
        "tickets",
        (
            EXPRESSION,
            "priority",
            "level",
            "created_at",
            "response_due",
            "first_response_at",
            "paused_at",
        ),
    ),
    ("messages", ("action",)),
    ("messages", ("action", "received_at")),
    ("attachments", ("sha256",)),
)


@pytest.mark.parametrize("commit", [LAST, OLDER])
def test_an_upgraded_database_has_the_shape_of_a_new_one(tmp_path, commit):
    db = release_copy(tmp_path, commit)
    Store(db).close()
    Store(tmp_path / "new.db").close()
    assert shape(db) == shape(tmp_path / "new.db")


@pytest.mark.parametrize("commit", [LAST, OLDER])
def test_the_commands_work_on_a_release_database(tmp_path, commit):
    db = release_copy(tmp_path, commit)
    tickets = rows(db, "tickets")
    numbers = [(t["number"], t["response_due"], t["priority"]) for t in tickets]

    listed = [
        json.loads(line) for line in invoke("tickets", "--db", str(db), "--json").splitlines()
    ]
    assert [(t["number"], t["response_due"], t["priority"]) for t in listed] == numbers

    # exit status 1: a warning (the held messages), as before the upgrade
    status = json.loads(invoke("status", "--db", str(db), "--now", NOW, "--json", codes=(0, 1)))
    assert status["outbox"]["sent"] == 1
    assert [(m["mailbox"], m["last_uid"]) for m in status["mailboxes"]] == [("INBOX", 87)]
    assert invoke("outbox", "--db", str(db), "--json") == ""  # replayed acks wait for no one

    # One new request: the next ticket number; one reply to the first ticket: appended there.
    first = tickets[0]
    new = build(
        {
            "From": "Dana Cole <dana@newco.example>",
            "To": "support@msp.example",
            "Subject": "VPN drops every hour",
            "Date": "Tue, 10 Mar 2026 14:00:00 +0000",
            "Message-ID": "<after-upgrade-1@newco.example>",
        }
    )
    reply = build(
        {
            "From": first["requester"],
            "To": "support@msp.example",
            "Subject": f"Re: [#{first['number']}] {first['subject']}",
            "Date": "Tue, 10 Mar 2026 14:10:00 +0000",
            "Message-ID": "<after-upgrade-2@example.net>",
            "In-Reply-To": first["message_key"],
        },
        "Any news?\n",
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "1.eml").write_bytes(new)
    (tmp_path / "in" / "2.eml").write_bytes(reply)
    out = invoke("replay", "--db", str(db), "--now", NOW, "--json", str(tmp_path / "in"))
    got = [json.loads(line) for line in out.splitlines()]
    assert [(g["action"], g["ticket"]) for g in got] == [
        ("ticket", f"T-{len(tickets) + 1:06d}"),
        ("append", first["number"]),
    ]
    assert [t["number"] for t in rows(db, "tickets")[: len(tickets)]] == [n for n, *_ in numbers]
    assert pragma(db, "foreign_key_check") == []


@pytest.mark.parametrize("commit", [LAST, OLDER])
def test_a_release_databases_messages_are_found_by_search_once_opened(tmp_path, commit):
    """Migration 5 makes the full-text index and fills it from the rows already stored."""
    db = release_copy(tmp_path, commit)
    stored = rows(db, "messages")
    Store(db).close()
    conn = sqlite3.connect(db)
    try:
        for word in ("printer", "payroll", "invoice"):
            expected = [
                m["id"]
                for m in stored
                if re.search(rf"\b{word}\b", f"{m['subject']} {m['body']}", re.IGNORECASE)
            ]
            assert expected, word  # the release's rows hold the word
            assert sorted(h.message for h in fts.search(conn, word)) == expected, word
        # The index agrees with its content table (FTS5's own check raises when it does not).
        conn.execute(f"INSERT INTO {fts.TABLE}({fts.TABLE}, rank) VALUES ('integrity-check', 1)")
    finally:
        conn.close()


def test_opening_an_upgraded_database_again_changes_nothing(tmp_path):
    db = release_copy(tmp_path, LAST)
    Store(db).close()
    schema = pragma(db, "schema_version")  # bumped by any change to the schema
    store = Store(db)
    assert migrations.upgrade(store.db, str(db)) == []
    store.close()
    assert pragma(db, "schema_version") == schema
    assert pragma(db, "user_version") == [(migrations.LATEST,)]


def test_a_database_newer_than_the_code_is_refused_with_the_file_and_the_fix(tmp_path):
    db = release_copy(tmp_path, LAST)
    Store(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {migrations.LATEST + 1}")
    conn.close()
    schema = pragma(db, "schema_version")

    with pytest.raises(migrations.SchemaTooNew) as caught:
        Store(db)
    assert str(db) in str(caught.value)
    assert "fix: run the triage release that upgraded it" in str(caught.value)

    result = CliRunner().invoke(cli, ["tickets", "--db", str(db)])
    assert result.exit_code != 0
    assert f"{db}: the database is at schema version {migrations.LATEST + 1}" in result.output
    assert pragma(db, "schema_version") == schema  # untouched


def test_rows_naming_what_is_gone_are_unlinked_and_the_old_value_kept(tmp_path):
    """A ticket and a message deleted by hand in an old database: the migration does not
    fail; the references become NULL, and an event keeps what each one was."""
    db = release_copy(tmp_path, LAST)
    conn = sqlite3.connect(db)
    with conn:
        ticket = conn.execute("SELECT ticket_id FROM outbox WHERE status = 'sent'").fetchone()[0]
        key = conn.execute("SELECT message_key FROM attachments LIMIT 1").fetchone()[0]
        conn.execute("DELETE FROM tickets WHERE id = ?", (ticket,))
        conn.execute("DELETE FROM messages WHERE message_key = ?", (key,))
    counts = {t: len(rows(db, t)) for t in TABLES}
    naming = {
        t: [r["id"] for r in rows(db, t) if r.get("ticket_id") == ticket]
        for t in ("messages", "events", "outbox")
    }
    attached = [r["id"] for r in rows(db, "attachments") if r["message_key"] == key]
    assert all(naming.values()) and attached

    Store(db).close()

    assert pragma(db, "foreign_key_check") == []
    unlinked = [
        json.loads(r["detail"]) for r in rows(db, "events") if r["kind"] == "reference_unlinked"
    ]
    expected = [
        {"table": t, "id": i, "column": "ticket_id", "was": ticket, "missing": "tickets"}
        for t, ids in naming.items()
        for i in ids
    ] + [
        {
            "table": "attachments",
            "id": i,
            "column": "message_key",
            "was": key,
            "missing": "messages",
        }
        for i in attached
    ]
    assert sorted(unlinked, key=json.dumps) == sorted(expected, key=json.dumps)
    after = {t: len(rows(db, t)) for t in TABLES}
    assert after == {**counts, "events": counts["events"] + len(expected)}  # nothing dropped
    for table, ids in naming.items():
        assert {r["ticket_id"] for r in rows(db, table) if r["id"] in ids} == {None}


def test_a_failing_migration_leaves_the_database_at_the_step_before(tmp_path, monkeypatch):
    db = release_copy(tmp_path, LAST)
    Store(db).close()

    def half_done(d: sqlite_utils.Database) -> None:
        d.execute("ALTER TABLE tickets ADD COLUMN half TEXT")
        d.execute("SELECT * FROM no_such_table")

    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, half_done))
    monkeypatch.setattr(migrations, "LATEST", migrations.LATEST + 1)
    with pytest.raises(migrations.SchemaError) as caught:
        Store(db)
    assert f"{db}: migration {migrations.LATEST} (half_done)" in str(caught.value)
    assert pragma(db, "user_version") == [(migrations.LATEST - 1,)]
    assert "half" not in sqlite_utils.Database(db)["tickets"].columns_dict


_OPEN = """
import sys, time
from triage.store import migrations
from triage.store.desk import fts
from triage.store.sqlite import Store
from triage.store import sqlite as store_sqlite
ran = []
upgrade = migrations.upgrade
store_sqlite.migrations.upgrade = lambda db, where: ran.extend(upgrade(db, where)) or ran
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
Store(sys.argv[1]).close()
print(ran)
"""


def test_two_processes_opening_an_old_database_at_once_migrate_it_once(tmp_path):
    db = release_copy(tmp_path, OLDER)
    start = str(time.time() + 1.0)  # both start together, after their imports
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN, str(db), start],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    ran = [json.loads(out) for out, _ in outs]
    assert sorted(ran[0] + ran[1]) == list(range(1, migrations.LATEST + 1))  # each step once
    assert pragma(db, "user_version") == [(migrations.LATEST,)]
    assert pragma(db, "foreign_key_check") == []
