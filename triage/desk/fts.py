"""Full-text search over messages' subjects and bodies (SQLite FTS5), kept in step by triggers.

`messages_fts` is an external-content FTS5 table over `messages` (no second copy of the
text). Three triggers keep it in step with every insert, update and delete of a message, in
the writer's own transaction, so the index is never behind a committed row, whichever process
wrote it (the daemon, `triage replay`, `triage review release`). The store calls `ensure` where
it makes its schema; `ensure` is idempotent and fills the index once from the rows already
there. Datasette finds the table by its `content='messages'` and offers a search box on
`messages`; `search` is the same search for code.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

TABLE = "messages_fts"
COLUMNS = ("subject", "body")

# unicode61 with diacritics removed: "Büro" is found by "buro" and "Buro"; porter would stem
# English only, and the mail is in several languages (fixtures: German, French, Japanese).
_STATEMENTS = (
    f"""CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE} USING fts5(
    subject, body, content='messages', content_rowid='id',
    tokenize='unicode61 remove_diacritics 2'
)""",
    f"""CREATE TRIGGER IF NOT EXISTS {TABLE}_ai AFTER INSERT ON messages BEGIN
    INSERT INTO {TABLE}(rowid, subject, body) VALUES (new.id, new.subject, new.body);
END""",
    f"""CREATE TRIGGER IF NOT EXISTS {TABLE}_ad AFTER DELETE ON messages BEGIN
    INSERT INTO {TABLE}({TABLE}, rowid, subject, body)
        VALUES ('delete', old.id, old.subject, old.body);
END""",
    f"""CREATE TRIGGER IF NOT EXISTS {TABLE}_au AFTER UPDATE OF subject, body ON messages BEGIN
    INSERT INTO {TABLE}({TABLE}, rowid, subject, body)
        VALUES ('delete', old.id, old.subject, old.body);
    INSERT INTO {TABLE}(rowid, subject, body) VALUES (new.id, new.subject, new.body);
END""",
)


def ddl() -> str:
    """The statements `ensure` runs (for a numbered migration, if the store prefers one)."""
    return ";\n".join(_STATEMENTS) + ";\n"


def ensure(conn: sqlite3.Connection) -> bool:
    """Create the index and its triggers when missing, filled from the rows already stored.

    Runs in one transaction (BEGIN IMMEDIATE: two processes starting at once cannot both
    fill it). Returns True when it created the index. Needs the `messages` table.
    """
    have = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
    ).fetchone()
    triggers = conn.execute(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE ?",
        (f"{TABLE}_a_",),
    ).fetchone()[0]
    if have and triggers == 3:
        return False
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN IMMEDIATE")
    try:
        created = (
            conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
            ).fetchone()
            is None
        )
        for statement in _STATEMENTS:
            conn.execute(statement)
        # 'rebuild' reads every row of the content table: whatever was stored before the
        # triggers existed (or while they were missing) is indexed once, here.
        conn.execute(f"INSERT INTO {TABLE}({TABLE}) VALUES ('rebuild')")
        if own:
            conn.execute("COMMIT")
    except BaseException:
        if own:
            conn.execute("ROLLBACK")
        raise
    return created


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
    rows = conn.execute(
        f"SELECT m.id, t.number, m.subject,"
        f" snippet({TABLE}, -1, '[', ']', '…', 12), m.received_at"
        f" FROM {TABLE} JOIN messages m ON m.id = {TABLE}.rowid"
        f" LEFT JOIN tickets t ON t.id = m.ticket_id"
        f" WHERE {TABLE} MATCH ? ORDER BY rank LIMIT ?",
        (q, limit),
    ).fetchall()
    return [Hit(*row) for row in rows]
