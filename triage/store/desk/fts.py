"""Full-text search over messages' subjects and bodies (SQLite FTS5), kept in step by the store.

`messages_fts` is an external-content FTS5 table over `messages` (no second copy of the
text). The store indexes the messages a batch inserted just before the batch commits
(`index_from`, called by `Store.commit`; a write outside a batch is indexed at once), in the
writer's own transaction, so the index is never behind a committed row whichever process
wrote it (the daemon, `triage replay`, `triage review release`). One FTS5 write per batch:
a trigger per row would write a new index segment for every message, because FTS5 flushes
at each savepoint and every message is written in its own. Two triggers keep changes and
deletes in step. `ensure` makes the index, idempotent, and fills it once from the rows
already there. Datasette finds the table by its `content='messages'` and offers a search box
on `messages`; `search` is the same search for code.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from triage.store.desk.readonly import connect

TABLE = "messages_fts"
COLUMNS = ("subject", "body")


def ensure(conn: sqlite3.Connection) -> bool:
    """Create the index and its triggers when missing, filled from the rows already stored.

    Runs in one transaction (BEGIN IMMEDIATE: two processes starting at once cannot both
    fill it). Returns True when it created the index. Needs the `messages` table. The store
    calls it where it makes its schema (or from a numbered migration).
    """
    if _complete(conn):
        return False
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN IMMEDIATE")
    try:
        created = not _has_table(conn)
        # unicode61 with diacritics removed: "Büro" is found by "buro" and "Buro"; porter
        # would stem English only, and the mail is in several languages.
        conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5("
            " subject, body, content='messages', content_rowid='id',"
            " tokenize='unicode61 remove_diacritics 2')"
        )
        # Inserts are indexed by the store at commit (`index_from`); an earlier release's
        # per-row trigger goes.
        conn.execute("DROP TRIGGER IF EXISTS messages_fts_ai")
        conn.execute(
            "CREATE TRIGGER IF NOT EXISTS messages_fts_ad AFTER DELETE ON messages BEGIN"
            " INSERT INTO messages_fts(messages_fts, rowid, subject, body)"
            " VALUES ('delete', old.id, old.subject, old.body);"
            " END"
        )
        conn.execute(
            "CREATE TRIGGER IF NOT EXISTS messages_fts_au AFTER UPDATE OF subject, body"
            " ON messages BEGIN"
            " INSERT INTO messages_fts(messages_fts, rowid, subject, body)"
            " VALUES ('delete', old.id, old.subject, old.body);"
            " INSERT INTO messages_fts(rowid, subject, body)"
            " VALUES (new.id, new.subject, new.body);"
            " END"
        )
        # 'rebuild' reads every row of the content table: whatever was stored before the
        # triggers existed (or while they were missing) is indexed once, here.
        conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
        if own:
            conn.execute("COMMIT")
    except BaseException:
        if own:
            conn.execute("ROLLBACK")
        raise
    return created


def index_from(conn: sqlite3.Connection, first: int) -> None:
    """Index the messages from row `first` on: those the open transaction inserted.

    The writer holds the write lock from its first insert, so every row from `first` on is
    its own and none is indexed yet.
    """
    conn.execute(
        "INSERT INTO messages_fts(rowid, subject, body)"
        " SELECT id, subject, body FROM messages WHERE id >= ?",
        (first,),
    )


def _has_table(conn: sqlite3.Connection) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'messages_fts'"
        ).fetchone()
        is not None
    )


def present(db: Path) -> bool:
    """Whether the store has made the index in the database at `db` (read-only)."""
    conn = connect(db)
    try:
        return _has_table(conn)
    finally:
        conn.close()


def _complete(conn: sqlite3.Connection) -> bool:
    """The index and its two triggers are there, and no per-row insert trigger."""
    names = {
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            " AND name IN ('messages_fts_ai', 'messages_fts_ad', 'messages_fts_au')"
        )
    }
    return _has_table(conn) and names == {"messages_fts_ad", "messages_fts_au"}


@dataclass(frozen=True, slots=True)
class Hit:
    """One message matching a search, with its ticket when it has one."""

    message: int
    ticket: str | None
    subject: str | None
    snippet: str
    received_at: str

    def as_json(self) -> dict:
        return {
            "message": self.message,
            "ticket": self.ticket,
            "subject": self.subject,
            "snippet": self.snippet,
            "received_at": self.received_at,
        }


def query_text(words: str) -> str:
    """A person's search words -> an FTS5 query that cannot be a syntax error.

    Each word becomes a quoted string (quotes doubled), so `"`, `*`, `:`, `-`, `AND` or a
    column name typed into a search box are searched for, never parsed.
    """
    terms = [w.replace('"', '""') for w in words.split()]
    return " ".join(f'"{t}"' for t in terms if t.strip('"'))


def search(conn: sqlite3.Connection, words: str, limit: int = 50) -> list[Hit]:
    """Messages whose subject or body has every word, best match first."""
    q = query_text(words)
    if not q:
        return []
    if getattr(conn, "dialect", None) == "postgresql":
        return _search_postgres(conn, words, limit)
    rows = conn.execute(
        "SELECT m.id, t.number, m.subject,"
        " snippet(messages_fts, -1, '[', ']', '…', 12), m.received_at"
        " FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid"
        " LEFT JOIN tickets t ON t.id = m.ticket_id"
        " WHERE messages_fts MATCH ? ORDER BY rank LIMIT ?",
        (q, limit),
    ).fetchall()
    return [Hit(*row) for row in rows]


def _search_postgres(conn, words: str, limit: int) -> list[Hit]:
    """The same search on the PostgreSQL store: its `search` column (a tsvector of subject
    and body, postgres_schema.py 6, under a GIN index). plainto_tsquery ANDs the words and
    parses nothing a person types. Ranked by ts_rank, not FTS5's bm25: the same messages
    are found, their order may differ; and the `simple` configuration keeps diacritics
    ("buro" does not find "Büro" here)."""
    rows = conn.execute(
        "SELECT m.id, t.number, m.subject,"
        " ts_headline('simple', coalesce(m.subject, '') || ' ' || coalesce(m.body, ''), q,"
        " 'StartSel=[, StopSel=], MaxWords=12, MinWords=4, MaxFragments=1,"
        " FragmentDelimiter=…'), m.received_at"
        " FROM messages m CROSS JOIN plainto_tsquery('simple', ?) AS q"
        " LEFT JOIN tickets t ON t.id = m.ticket_id"
        " WHERE m.search @@ q ORDER BY ts_rank(m.search, q) DESC, m.id LIMIT ?",
        (words, limit),
    ).fetchall()
    return [Hit(*row) for row in rows]
