"""`triage prune`: old filtered mail is emptied and what nothing needs is deleted; a ticket's
mail, held and quarantined mail, the outbox and the events stay; the same mail fetched again
is still a duplicate, never a ticket."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import ROOT
from triage.cli import cli
from triage.store import files as content
from triage.store import prune as store_prune
from triage.store.desk import fts

FIXTURES = ROOT / "fixtures" / "emails"
OLD = "2025-01-10T10:00:00Z"  # when the fixtures arrived
RECENT = "2025-02-25T10:00:00Z"  # when one filtered message arrived (set by hand)
NOW = "2025-03-01T00:00:00Z"  # prune --older-than 30: before 2025-01-30
SHARED = hashlib.sha256(b"shared attachment").hexdigest()  # also a ticket's attachment
ALONE = hashlib.sha256(b"filtered mail's own attachment").hexdigest()
RETRIED = hashlib.sha256(b"quarantined, retried: no row").hexdigest()
WAITING = hashlib.sha256(b"quarantined, awaiting a retry").hexdigest()
FRESH = hashlib.sha256(b"quarantined, retried yesterday").hexdigest()


def triage(*args: str | Path, codes: tuple[int, ...] = (0,)) -> str:
    result = CliRunner().invoke(cli, ["--log-level", "warning", *map(str, args)])
    assert result.exit_code in codes, result.output
    return result.stdout if result.exit_code == 0 else result.output  # stderr: messages


def query(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def old_time() -> float:
    return time.mktime(time.strptime("2025-01-10", "%Y-%m-%d"))


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """The fixtures replayed at OLD, and by hand: one filtered message arrived RECENT; the
    oldest filtered message has an attachment shared with a ticket, one of its own and its
    bytes kept (as an earlier release could leave them); a quarantined message awaiting a
    retry, and the leftover bytes of two retried ones (one old, one fresh)."""
    db = tmp_path_factory.mktemp("made") / "triage.db"
    triage("replay", "--db", db, "--now", OLD, "--workers", "1", FIXTURES)
    files = db.with_name("triage.db.files")
    conn = sqlite3.connect(db)
    first, last = conn.execute(
        "SELECT MIN(id), MAX(id) FROM messages WHERE action = 'filtered'"
    ).fetchone()
    conn.execute("UPDATE messages SET received_at = ? WHERE id = ?", (RECENT, last))
    key, sha = conn.execute(
        "SELECT message_key, sha256 FROM messages WHERE id = ?", (first,)
    ).fetchone()
    ticket_key = conn.execute(
        "SELECT message_key FROM messages WHERE action = 'ticket'"
    ).fetchone()[0]
    for owner, digest in ((ticket_key, SHARED), (key, SHARED), (key, ALONE)):
        conn.execute(
            "INSERT INTO attachments (message_key, filename, content_type, size, sha256)"
            " VALUES (?, 'a.pdf', 'application/pdf', 17, ?)",
            (owner, digest),
        )
    for digest in (SHARED, ALONE):
        content.save(files, digest, b"x" * 17)
    conn.execute("INSERT INTO message_bytes (sha256, raw) VALUES (?, ?)", (sha, b"y" * 100))
    conn.execute(
        "INSERT INTO messages (message_key, sha256, source, received_at, action, reason)"
        " VALUES (?, ?, 'imap:INBOX/9', ?, 'quarantined', 'parse_error')",
        (f"sha256:{WAITING}", WAITING, OLD),
    )
    fts.index_from(conn, conn.execute("SELECT MAX(id) FROM messages").fetchone()[0])
    conn.commit()
    conn.close()
    (files / "quarantine").mkdir(exist_ok=True)
    for digest in (RETRIED, WAITING, FRESH):
        path = files / "quarantine" / f"{digest}.eml"
        path.write_bytes(b"z" * 10)
        if digest != FRESH:
            os.utime(path, (old_time(), old_time()))
    for path in (files / "review").glob("*.eml"):  # held since OLD, still held
        os.utime(path, (old_time(), old_time()))
    return db


@pytest.fixture
def db(made, tmp_path) -> Path:
    """A copy of `made`, its files with it."""
    target = tmp_path / "triage.db"
    shutil.copyfile(made, target)
    shutil.copytree(made.with_name("triage.db.files"), tmp_path / "triage.db.files")
    return target


def snapshot(db: Path) -> dict:
    """What prune must never change: tickets, a ticket's messages, held and quarantined mail,
    the outbox, the events."""
    return {
        "tickets": query(db, "SELECT * FROM tickets ORDER BY id"),
        "kept": query(db, "SELECT * FROM messages WHERE action != 'filtered' ORDER BY id"),
        "outbox": query(db, "SELECT * FROM outbox ORDER BY id"),
        "events": query(db, "SELECT * FROM events ORDER BY id"),
    }


def test_old_filtered_mail_is_emptied_and_everything_else_stays(db):
    files = db.with_name("triage.db.files")
    before = snapshot(db)
    filtered = query(
        db,
        "SELECT id, message_key, message_id, fingerprint, reason, decision, received_at"
        " FROM messages WHERE action = 'filtered' ORDER BY id",
    )
    reviews = sorted((files / "review").glob("*.eml"))
    assert len(filtered) == 64 and len(reviews) == 2

    out = json.loads(triage("prune", "--older-than", "30", "--now", NOW, "--json", "--db", db))

    assert out["messages"] == 63 and out["dry_run"] is False
    assert (out["attachments"], out["kept_bytes"], out["files"]) == (2, 1, 2)  # ALONE, RETRIED
    assert out["bytes_freed"] > 63 * 20 and out["longest_lock_ms"] > 0
    assert out["before"] == "2025-01-30T00:00:00Z" and out["older_than_days"] == 30
    assert snapshot(db) == before
    after = query(
        db,
        "SELECT id, message_key, message_id, fingerprint, reason, decision, received_at,"
        " subject, from_addr, source, body, pruned_at FROM messages"
        " WHERE action = 'filtered' ORDER BY id",
    )
    for was, now in zip(filtered[:-1], after[:-1], strict=True):
        assert now[:5] == was[:5] and now[6] == was[6]  # key, Message-ID, fingerprint, rule
        category = json.loads(was[5])["category"]
        assert json.loads(now[5]) == {"category": category}
        assert now[7:11] == (None, None, None, None) and now[11] == NOW
    assert after[-1][:7] == filtered[-1] and after[-1][7] and after[-1][11] is None  # recent
    left = query(db, "SELECT sha256 FROM attachments WHERE sha256 IN (?, ?)", (SHARED, ALONE))
    assert left == [(SHARED,)]  # the ticket's row
    assert content.path_for(files, SHARED).is_file()  # a ticket still names it
    assert not content.path_for(files, ALONE).exists()
    assert query(db, "SELECT COUNT(*) FROM message_bytes WHERE length(raw) = 100") == [(0,)]
    assert sorted(p.stem for p in (files / "quarantine").glob("*.eml")) == sorted([WAITING, FRESH])
    assert sorted((files / "review").glob("*.eml")) == reviews  # still held
    # The full-text index agrees with its rows (FTS5's own check raises when it does not),
    # and finds no pruned message.
    query(db, "INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")
    hits = query(
        db,
        "SELECT m.id FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid"
        " WHERE messages_fts MATCH 'undeliverable OR automatic OR newsletter' AND m.pruned_at IS NOT NULL",
    )
    assert hits == []

    again = json.loads(triage("prune", "--older-than", "30", "--now", NOW, "--json", "--db", db))
    assert (again["messages"], again["attachments"], again["files"]) == (0, 0, 0)


def test_pruned_mail_fetched_again_is_a_duplicate_never_a_ticket(db, tmp_path):
    """A server that offers pruned mail again: each message is a duplicate (its key and
    fingerprint were kept), no row is added and no ticket opened."""
    filtered = {
        Path(s).name for (s,) in query(db, "SELECT source FROM messages WHERE action = 'filtered'")
    }
    triage("prune", "--older-than", "30", "--now", NOW, "--db", db)
    tickets = query(db, "SELECT COUNT(*) FROM tickets")
    rows = query(db, "SELECT COUNT(*) FROM messages")
    again = tmp_path / "again"
    again.mkdir()
    for name in filtered:
        (again / name).write_bytes((FIXTURES / name).read_bytes())

    out = triage(
        "replay", "--db", db, "--now", "2025-03-02T10:00:00Z", "--workers", "1", "--json", again
    )

    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == len(filtered) == 64
    assert {(d["action"], d["ticket"]) for d in lines} == {("duplicate", None)}
    assert query(db, "SELECT COUNT(*) FROM tickets") == tickets
    assert query(db, "SELECT COUNT(*) FROM messages") == rows


def test_a_dry_run_counts_what_the_prune_then_does_and_changes_nothing(db):
    files = db.with_name("triage.db.files")

    def state() -> tuple:
        conn = sqlite3.connect(db)
        try:
            dump = list(conn.iterdump())
        finally:
            conn.close()
        return dump, sorted(str(p) for p in files.rglob("*"))

    before = state()
    dry = json.loads(
        triage("prune", "--older-than", "30", "--now", NOW, "--dry-run", "--json", "--db", db)
    )
    assert state() == before
    done = json.loads(triage("prune", "--older-than", "30", "--now", NOW, "--json", "--db", db))
    assert dry["dry_run"] is True
    fields = ("messages", "attachments", "kept_bytes", "files", "bytes_freed", "batches")
    assert {f: dry[f] for f in fields} == {f: done[f] for f in fields}
    text = triage("prune", "--older-than", "30", "--now", NOW, "--dry-run", "--db", db)
    assert "would prune mail before 2025-01-30T00:00:00Z: 0 filtered messages" in text


def test_batches_of_two_prune_the_same_rows_each_in_its_own_transaction(db, made, monkeypatch):
    monkeypatch.setattr(store_prune, "BATCH", 2)
    out = json.loads(triage("prune", "--older-than", "30", "--now", NOW, "--json", "--db", db))
    assert out["messages"] == 63 and out["batches"] == 32
    assert query(db, "SELECT id FROM messages WHERE pruned_at IS NOT NULL") == query(
        made,
        "SELECT id FROM messages WHERE action = 'filtered' AND received_at < '2025-01-30'",
    )


def test_a_prune_beside_a_writer_waits_for_its_lock(db):
    """A daemon's batch holds the write lock: the prune waits for it, then runs."""
    writer = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE tickets SET queue = 'night' WHERE id = 1")

    threading.Timer(1.0, lambda: writer.execute("COMMIT")).start()
    started = time.monotonic()
    out = json.loads(triage("prune", "--older-than", "30", "--now", NOW, "--json", "--db", db))
    assert time.monotonic() - started >= 0.9 and out["messages"] == 63
    writer.close()
    assert query(db, "SELECT queue FROM tickets WHERE id = 1") == [("night",)]


@pytest.mark.parametrize("days", ["0", "-3", "soon"])
def test_days_must_be_a_whole_number_of_at_least_one(db, days):
    out = triage("prune", "--older-than", days, "--db", db, codes=(2,))
    assert "--older-than" in out
