"""What the report and the metrics read: functions of a read-only connection, returning rows.

`triage.desk.report`, `triage.desk.series` and `triage.desk.snapshot` make their values from
these; each caller reads inside `one_snapshot`, so every figure describes the same instant.
The ticket columns are `tracking.COLUMNS` written out (SQL here is literal text; a test
compares them), read by position into `Ticket` values.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from triage.core.sla.tracking import Ticket, instant


def _postgres(conn) -> bool:
    """A connection to the PostgreSQL store (store/postgres.py `read_only`), whose statements
    below have a PostgreSQL form where SQLite's means something else there."""
    return getattr(conn, "dialect", None) == "postgresql"


@contextmanager
def one_snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A read transaction: every read inside sees the database at one instant (on PostgreSQL
    a REPEATABLE READ one: its default isolation gives each statement its own instant)."""
    if _postgres(conn):
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    else:
        conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


def _ticket(row: Sequence) -> Ticket:
    """A row of tracking.COLUMNS, then paused_at -> Ticket (its fields are in the columns'
    order): a pending ticket's paused clock is what keeps it from counting as breached."""
    created = instant(row[9])
    assert created is not None  # NOT NULL in the schema
    return Ticket(*row[:8], instant(row[8]), created, instant(row[10]), instant(row[11]))


def tickets(conn: sqlite3.Connection) -> list[Ticket]:
    """Every ticket, oldest first (the report's table)."""
    rows = conn.execute(
        "SELECT id, number, status, priority, level, policy, plan, timezone,"
        " response_due, created_at, first_response_at, paused_at FROM tickets ORDER BY id"
    ).fetchall()
    return [_ticket(r) for r in rows]


def tickets_since(conn: sqlite3.Connection, since: str | None) -> list[tuple[Ticket, str]]:
    """(ticket, company or '') of the tickets created at or after `since` (None: all)."""
    if _postgres(conn):  # an instant only from ISO text: a CAST of other text would fail
        rows = conn.execute(
            "SELECT id, number, status, priority, level, policy, plan, timezone,"
            " response_due, created_at, first_response_at, paused_at, COALESCE(company, '')"
            " FROM tickets WHERE (CAST(? AS text) IS NULL OR CASE WHEN created_at"
            " ~ '^\\d{4}-\\d\\d-\\d\\d[T ]\\d\\d:\\d\\d' THEN CAST(created_at AS timestamptz) END"
            " >= CAST(? AS timestamptz)) ORDER BY id",
            (since, since),
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT id, number, status, priority, level, policy, plan, timezone,"
            " response_due, created_at, first_response_at, paused_at, COALESCE(company, '')"
            " FROM tickets WHERE (? IS NULL OR julianday(created_at) >= julianday(?)) ORDER BY id",
            (since, since),
        ).fetchall()
    return [(_ticket(r[:12]), r[12]) for r in rows]


def filtered_since(conn: sqlite3.Connection, since: str | None) -> list[tuple[str, int]]:
    """(reason, messages) filtered at or after `since` (None: ever)."""
    if _postgres(conn):
        return conn.execute(
            "SELECT COALESCE(reason, ''), COUNT(*) FROM messages WHERE action = 'filtered'"
            " AND (CAST(? AS text) IS NULL OR CASE WHEN received_at"
            " ~ '^\\d{4}-\\d\\d-\\d\\d[T ]\\d\\d:\\d\\d' THEN CAST(received_at AS timestamptz) END"
            " >= CAST(? AS timestamptz)) GROUP BY 1",
            (since, since),
        ).fetchall()
    return conn.execute(
        "SELECT COALESCE(reason, ''), COUNT(*) FROM messages WHERE action = 'filtered'"
        " AND (? IS NULL OR julianday(received_at) >= julianday(?)) GROUP BY 1",
        (since, since),
    ).fetchall()


def message_counts(conn: sqlite3.Connection) -> list[tuple[str, str, int]]:
    """(action, reason or '', messages) over every stored message."""
    return conn.execute(
        "SELECT action, COALESCE(reason, ''), COUNT(*) FROM messages GROUP BY 1, 2"
    ).fetchall()


def open_per_priority(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """(priority or '', open tickets) for every priority ever used (0 when none is open)."""
    return conn.execute(
        "SELECT COALESCE(priority, ''),"
        " SUM(CASE WHEN status NOT IN ('resolved', 'closed') THEN 1 ELSE 0 END)"
        " FROM tickets GROUP BY 1"
    ).fetchall()


def unanswered_open(conn: sqlite3.Connection) -> list[Ticket]:
    """Open tickets (not resolved or closed) with a deadline and no first response, oldest
    first; a paused one among them (`Ticket.paused`)."""
    rows = conn.execute(
        "SELECT id, number, status, priority, level, policy, plan, timezone,"
        " response_due, created_at, first_response_at, paused_at"
        " FROM tickets WHERE first_response_at IS NULL AND response_due IS NOT NULL"
        " AND status NOT IN ('resolved', 'closed') ORDER BY id"
    ).fetchall()
    return [_ticket(r) for r in rows]


def outbox_counts(conn: sqlite3.Connection) -> list[tuple[str, str, int]]:
    """(kind 'ack' or 'alert', status, rows) of the outbox rows not yet sent."""
    return conn.execute(
        "SELECT CASE WHEN ticket_id IS NULL THEN 'alert' ELSE 'ack' END, status, COUNT(*)"
        " FROM outbox WHERE status IN ('pending', 'sending', 'failed') GROUP BY 1, 2"
    ).fetchall()


def review_count(conn: sqlite3.Connection) -> int:
    """Messages held for review."""
    return conn.execute("SELECT COUNT(*) FROM messages WHERE action = 'review'").fetchone()[0]


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    if _postgres(conn):
        found = conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = ?",
            (table,),
        )
    else:
        found = conn.execute("SELECT name FROM pragma_table_info(?)", (table,))
    return {name for (name,) in found}


def mailbox_rows(conn: sqlite3.Connection) -> list[dict]:
    """Every mailbox's state row as a dict (none when the table is not there)."""
    names = _columns(conn, "mailbox_state")
    if not names:
        return []
    if _postgres(conn):
        cur = conn.execute("SELECT * FROM mailbox_state ORDER BY mailbox")
        columns = [d.name for d in cur.description]
        return [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("SELECT * FROM mailbox_state ORDER BY mailbox").fetchall()
    finally:
        conn.row_factory = None
    return [dict(r) for r in rows]


def relay_rows(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """(relay, failing 0/1) of every relay (none when the table lacks `failing`)."""
    if "failing" not in _columns(conn, "relay_state"):
        return []
    return conn.execute(
        "SELECT relay, COALESCE(failing, 0) FROM relay_state ORDER BY relay"
    ).fetchall()


def latency_counts(
    conn: sqlite3.Connection, skew: float, oldest: float, sources: Sequence[str]
) -> tuple:
    """(rows, rows counted, seconds in all, then one count per bound of the histogram).

    Seconds from the Date header (arrival, the sender's word) to received_at, over rows whose
    source starts with one of two `sources`; a value outside [-skew, oldest] is not counted,
    one under 0 counts as 0. The bounds are triage.desk.snapshot.BUCKETS, in order (its caller
    refuses a count that differs).
    """
    first, second = sources
    if _postgres(conn):  # no sum of booleans; GREATEST for the scalar MAX
        return conn.execute(
            "SELECT COUNT(*), COUNT(s), COALESCE(SUM(s), 0),"
            " COUNT(*) FILTER (WHERE s <= 1), COUNT(*) FILTER (WHERE s <= 5),"
            " COUNT(*) FILTER (WHERE s <= 15), COUNT(*) FILTER (WHERE s <= 30),"
            " COUNT(*) FILTER (WHERE s <= 60), COUNT(*) FILTER (WHERE s <= 120),"
            " COUNT(*) FILTER (WHERE s <= 300), COUNT(*) FILTER (WHERE s <= 600),"
            " COUNT(*) FILTER (WHERE s <= 1800), COUNT(*) FILTER (WHERE s <= 3600),"
            " COUNT(*) FILTER (WHERE s <= 7200), COUNT(*) FILTER (WHERE s <= 21600),"
            " COUNT(*) FILTER (WHERE s <= 86400) FROM ("
            " SELECT CASE WHEN d BETWEEN ? AND ? THEN GREATEST(d, 0) END AS s FROM ("
            "  SELECT CAST(EXTRACT(EPOCH FROM"
            "   CASE WHEN received_at ~ '^\\d{4}-\\d\\d-\\d\\d[T ]\\d\\d:\\d\\d'"
            "    THEN CAST(received_at AS timestamptz) END"
            "   - CASE WHEN date ~ '^\\d{4}-\\d\\d-\\d\\d[T ]\\d\\d:\\d\\d'"
            "    THEN CAST(date AS timestamptz) END) AS double precision) AS d"
            "  FROM messages WHERE source LIKE ? OR source LIKE ?) AS seconds) AS counted",
            (-skew, oldest, f"{first}%", f"{second}%"),
        ).fetchone()
    # seconds to the millisecond: julianday's arithmetic is off by microseconds (600 s read
    # as 600.000002 s would miss the 600 s bucket it belongs in)
    return conn.execute(
        "SELECT COUNT(*), COUNT(s), COALESCE(SUM(s), 0),"
        " SUM(s <= 1), SUM(s <= 5), SUM(s <= 15), SUM(s <= 30), SUM(s <= 60), SUM(s <= 120),"
        " SUM(s <= 300), SUM(s <= 600), SUM(s <= 1800), SUM(s <= 3600), SUM(s <= 7200),"
        " SUM(s <= 21600), SUM(s <= 86400) FROM ("
        " SELECT CASE WHEN d BETWEEN ? AND ? THEN MAX(d, 0) END AS s FROM ("
        "  SELECT ROUND((julianday(received_at) - julianday(date)) * 86400.0, 3) AS d"
        "  FROM messages WHERE source LIKE ? OR source LIKE ?))",
        (-skew, oldest, f"{first}%", f"{second}%"),
    ).fetchone()
