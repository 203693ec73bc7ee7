"""Full-text search over subjects and bodies (FTS5), kept in step with `messages` by the store."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from tests.support.desk import demo_db
from triage.store.desk import fts
from triage.store.sqlite import Store


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "triage.db")
    yield s
    s.close()


def _insert(conn: sqlite3.Connection, key: str, subject: str, body: str) -> int:
    cur = conn.execute(
        "INSERT INTO messages (message_key, action, received_at, subject, body)"
        " VALUES (?, 'ticket', '2026-03-10T14:30:00Z', ?, ?)",
        (key, subject, body),
    )
    return cur.lastrowid


def _add(conn: sqlite3.Connection, key: str, subject: str, body: str) -> int:
    """A message row as a writer outside a batch stores it: indexed at once."""
    row = _insert(conn, key, subject, body)
    fts.index_from(conn, row)
    return row


def _intact(conn: sqlite3.Connection) -> None:
    """The index agrees with its content table (FTS5's own check raises otherwise)."""
    conn.execute(f"INSERT INTO {fts.TABLE}({fts.TABLE}, rank) VALUES ('integrity-check', 1)")


def _found(conn: sqlite3.Connection, words: str) -> list[int]:
    return sorted(h.message for h in fts.search(conn, words))


def _drop_index(conn: sqlite3.Connection) -> None:
    """The database as a release before the index left it."""
    for trigger in ("messages_fts_ad", "messages_fts_au"):
        conn.execute(f"DROP TRIGGER {trigger}")
    conn.execute(f"DROP TABLE {fts.TABLE}")


def test_a_new_database_has_the_index_from_the_start(store: Store):
    assert fts.ensure(store.conn) is False  # the store's migration made it
    m = _add(store.conn, "k1", "Printer offline", "The badge printer shows offline.")
    assert _found(store.conn, "printer") == [m]


def test_rows_stored_before_the_index_are_found_once_it_is_made(store: Store):
    _drop_index(store.conn)
    old = _insert(store.conn, "k1", "Printer offline", "The badge printer shows offline.")
    assert fts.ensure(store.conn) is True
    assert _found(store.conn, "printer") == [old]
    assert fts.ensure(store.conn) is False  # idempotent: a second start changes nothing
    assert _found(store.conn, "printer") == [old]  # ... and indexes nothing twice


def test_insert_update_and_delete_keep_the_index_in_step(store: Store):
    fts.ensure(store.conn)
    a = _add(store.conn, "k1", "VPN drops", "Since Monday the VPN drops every hour.")
    b = _add(store.conn, "k2", "Payroll export", "The bank cutoff is at 3 pm.")
    assert _found(store.conn, "vpn") == [a]
    store.conn.execute(
        "UPDATE messages SET subject = 'Tunnel drops', body = 'tunnel' WHERE id = ?", (a,)
    )
    assert _found(store.conn, "vpn") == []
    assert _found(store.conn, "tunnel") == [a]
    store.conn.execute("DELETE FROM messages WHERE id = ?", (b,))
    assert _found(store.conn, "payroll") == []
    _intact(store.conn)


def test_accents_and_case_do_not_matter(store: Store):
    fts.ensure(store.conn)
    m = _add(store.conn, "k1", "Drucker im Büro", "Der Drucker im BÜRO druckt nicht.")
    assert _found(store.conn, "buro") == [m]
    assert _found(store.conn, "DRUCKER büro") == [m]


@pytest.mark.parametrize(
    "words", ['"', "AND", "subject:", "NEAR(", "-printer", "print*", "a OR", '""x', "(", "   "]
)
def test_what_a_person_types_is_searched_for_never_parsed(store: Store, words: str):
    fts.ensure(store.conn)
    _add(store.conn, "k1", "Printer", "printer")
    fts.search(store.conn, words)  # no sqlite3.OperationalError (fts5: syntax error)


def test_every_word_must_appear(store: Store):
    fts.ensure(store.conn)
    both = _add(store.conn, "k1", "Printer", "The printer in room 4 jams.")
    _add(store.conn, "k2", "Printer", "The printer in room 5 is fine.")
    assert _found(store.conn, "printer jams") == [both]


def test_the_demo_mail_is_found_with_its_ticket(tmp_path: Path):
    demo = demo_db(tmp_path)
    conn = sqlite3.connect(demo.path)
    hits = fts.search(conn, "payroll cutoff")
    assert [h.ticket for h in hits] == ["T-000013"]
    assert re.search(r"\[(payroll|cutoff)\]", hits[0].snippet, re.IGNORECASE)  # words marked
    assert hits[0].as_json()["ticket"] == "T-000013"
    _intact(conn)  # replay's batches were indexed at their commits, each row once
    assert (
        conn.execute(f"SELECT COUNT(*) FROM {fts.TABLE}_docsize").fetchone()[0]
        == (conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
    )


def test_a_batch_is_indexed_at_its_commit_and_a_rolled_back_one_leaves_nothing(store: Store):
    store.begin()
    gone = _insert(store.conn, "k1", "Scanner jammed", "The scanner on floor 2 jams.")
    store.index_later(gone)
    store.rollback()
    store.begin()
    a = _insert(store.conn, "k2", "Scanner again", "scanner")
    store.index_later(a)
    store.conn.execute("SAVEPOINT msg")  # a message whose rows were undone mid-batch
    store.index_later(_insert(store.conn, "k3", "Scanner undone", "scanner"))
    store.conn.execute("ROLLBACK TO msg")
    store.conn.execute("RELEASE msg")
    b = _insert(store.conn, "k4", "Scanner thrice", "scanner")  # takes the undone row's id
    store.index_later(b)
    store.commit()
    assert _found(store.conn, "scanner") == [a, b]
    assert _found(store.conn, "undone") == []
    _intact(store.conn)


def test_a_row_deleted_in_the_batch_that_wrote_it_is_indexed_first(tmp_path: Path):
    from triage.store import held

    store = Store(tmp_path / "triage.db")
    store.begin()
    row = _insert(store.conn, "k1", "Toner low", "toner")
    store.index_later(row)
    held.forget_quarantined(store, row, "k1")  # FTS5 is told to forget only what it holds
    store.commit()
    assert _found(store.conn, "toner") == []
    _intact(store.conn)
    store.close()


def test_a_database_of_the_per_row_trigger_loses_it_and_stays_in_step(tmp_path: Path):
    path = tmp_path / "triage.db"
    store = Store(path)
    old = _add(store.conn, "k1", "Printer offline", "printer")
    store.conn.execute(
        "CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages BEGIN"
        " INSERT INTO messages_fts(rowid, subject, body) VALUES (new.id, new.subject, new.body);"
        " END"
    )
    store.conn.execute("PRAGMA user_version = 6")
    store.close()
    store = Store(path)  # migration 7
    names = {
        r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")
    }
    assert "messages_fts_ai" not in names
    store.begin()
    new = _insert(store.conn, "k2", "Printer again", "printer")
    store.index_later(new)
    store.commit()
    assert _found(store.conn, "printer") == [old, new]  # each once: no trigger indexed it too
    _intact(store.conn)
    store.close()
