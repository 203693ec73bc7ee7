"""What the metrics are made from: one consistent read of the database, and what the daemon
knows live.

`read` takes a read-only connection and returns a frozen `Snapshot` (the only SQL behind the
metrics); `Live` is what a running daemon feeds as it works (ingest latency on its own clock,
OAuth tokens' expiry) and every scrape reads. `triage.desk.metrics` turns both into metric
families.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from triage.service import tracking

# Ingest latency: seconds from a message's arrival to its row being committed. Buckets from a
# second (IDLE at work) to a day (a mailbox that was down overnight).
BUCKETS: tuple[float, ...] = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
# From the rows, arrival is the Date header: the sender's word. Outside this window it is a lie
# or a clock out of step, and the row is counted in triage_ingest_latency_skipped_total instead.
SKEW = 300.0  # a Date up to five minutes after storing: the sender's clock ahead, read as 0 s
OLDEST = 7 * 86400.0  # older than a week before storing: not a latency we can believe
MAILBOX_SOURCES = ("imap:", "graph:")  # rows fetched from a watched mailbox, not replayed files
LABEL_MAX = 80  # label values are rule ids and names; a longer one is cut, never exploded


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Latency:
    """Cumulative histogram counts: `buckets[i]` rows took at most BUCKETS[i] seconds."""

    buckets: tuple[int, ...] = (0,) * len(BUCKETS)
    count: int = 0
    total: float = 0.0
    skipped: int = 0

    @classmethod
    def of(cls, seconds: Iterable[float | None]) -> Latency:
        """Counts over latencies; None (arrival unknown or implausible) counts as skipped."""
        buckets = [0] * len(BUCKETS)
        count, total, skipped = 0, 0.0, 0
        for s in seconds:
            if s is None:
                skipped += 1
                continue
            count += 1
            total += s
            for i, bound in enumerate(BUCKETS):
                if s <= bound:
                    buckets[i] += 1
        return cls(tuple(buckets), count, total, skipped)


def plausible(arrived: datetime | None, stored: datetime) -> float | None:
    """Seconds from `arrived` to `stored`, or None when arrival is unknown or not believable."""
    if arrived is None:
        return None
    seconds = (stored - arrived).total_seconds()
    if seconds < -SKEW or seconds > OLDEST:
        return None
    return max(seconds, 0.0)


@dataclass(frozen=True, slots=True)
class Mailbox:
    name: str
    up: bool
    last_success: float | None  # Unix seconds of the last good round, None: never


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the database says at one instant: the values every family is made from."""

    messages: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (action, reason)
    open_tickets: Mapping[str, int] = field(default_factory=dict)  # priority -> open
    breached_open: int = 0
    at_risk_open: int | None = None  # None: no policies given, not computed
    outbox_pending: Mapping[str, int] = field(default_factory=dict)  # kind -> rows
    outbox_failed: Mapping[str, int] = field(default_factory=dict)
    mailboxes: tuple[Mailbox, ...] = ()
    relays: Mapping[str, bool] = field(default_factory=dict)  # relay -> up
    review_held: int = 0
    latency: Latency = field(default_factory=Latency)


class Live:
    """What the daemon knows and the rows do not: fed as it works, read at every scrape.

    Thread-safe: the daemon's loop writes, the HTTP server's thread reads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latencies: list[float | None] = []
        self._latency = Latency()
        self._tokens: dict[str, datetime | None] = {}

    def observe_ingest(self, arrived: datetime | None, stored: datetime) -> None:
        """One message committed at `stored` that arrived at `arrived` (the server's
        INTERNALDATE, or when the daemon first saw it; None when unknown)."""
        seconds = plausible(arrived, stored)
        with self._lock:
            old = self._latency
            if seconds is None:
                self._latency = Latency(old.buckets, old.count, old.total, old.skipped + 1)
                return
            buckets = tuple(n + (seconds <= b) for n, b in zip(old.buckets, BUCKETS, strict=True))
            self._latency = Latency(buckets, old.count + 1, old.total + seconds, old.skipped)

    def token(self, mailbox: str, expires: datetime | None) -> None:
        """The OAuth token `mailbox` now uses expires at `expires` (None: not known)."""
        with self._lock:
            self._tokens[mailbox] = expires

    @property
    def latency(self) -> Latency:
        with self._lock:
            return self._latency

    def tokens(self) -> dict[str, datetime | None]:
        with self._lock:
            return dict(self._tokens)


# --------------------------------------------------------------------------- reading (SQL)


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {name for (name,) in conn.execute("SELECT name FROM pragma_table_info(?)", (table,))}


def label(value: object) -> str:
    text = "" if value is None else str(value)
    return text[:LABEL_MAX]


def read(
    conn: sqlite3.Connection,
    now: datetime,
    policies: Mapping | None = None,
    threshold: float = tracking.THRESHOLD,
) -> Snapshot:
    """Every value the families need, in one read transaction (one consistent snapshot)."""
    conn.execute("BEGIN")
    try:
        return _read(conn, now, policies, threshold)
    finally:
        conn.execute("COMMIT")


def _read(conn, now, policies, threshold) -> Snapshot:
    messages: dict[tuple[str, str], int] = {}
    for action, reason, n in conn.execute(
        "SELECT action, COALESCE(reason, ''), COUNT(*) FROM messages GROUP BY 1, 2"
    ):
        key = (label(action), label(reason))
        messages[key] = messages.get(key, 0) + n
    # Every priority ever used is listed (0 when none is open), so a series does not vanish
    # when the last ticket of a priority is closed. Resolved and closed leave the queue.
    open_tickets = {
        label(p): n
        for p, n in conn.execute(
            "SELECT COALESCE(priority, ''), SUM(status NOT IN ('resolved', 'closed'))"
            " FROM tickets GROUP BY 1"
        )
    }
    tracked = [
        tracking.from_row(r)
        for r in conn.execute(
            # tracking.COLUMNS, written out (SQL here is literal text; a test compares them)
            "SELECT id, number, status, priority, level, policy, plan, timezone,"
            " response_due, created_at, first_response_at"
            " FROM tickets WHERE first_response_at IS NULL AND response_due IS NOT NULL"
            " AND status NOT IN ('resolved', 'closed') ORDER BY id"
        )
    ]
    breached = sum(1 for t in tracked if tracking.is_breached(t, now))
    at_risk = None
    if policies is not None:
        numbers, _problems = tracking.at_risk_of(tracked, policies, now, threshold)
        at_risk = len(numbers)
    pending: dict[str, int] = {"ack": 0, "alert": 0}
    failed: dict[str, int] = {"ack": 0, "alert": 0}
    for kind, status, n in conn.execute(
        "SELECT CASE WHEN ticket_id IS NULL THEN 'alert' ELSE 'ack' END, status, COUNT(*)"
        " FROM outbox WHERE status IN ('pending', 'sending', 'failed') GROUP BY 1, 2"
    ):
        target = failed if status == "failed" else pending
        target[kind] = target.get(kind, 0) + n
    return Snapshot(
        messages=messages,
        open_tickets=open_tickets,
        breached_open=breached,
        at_risk_open=at_risk,
        outbox_pending=pending,
        outbox_failed=failed,
        mailboxes=_mailboxes(conn),
        relays=_relays(conn),
        review_held=conn.execute(
            "SELECT COUNT(*) FROM messages WHERE action = 'review'"
        ).fetchone()[0],
        latency=_latency(conn),
    )


def _epoch(text: str | None) -> float | None:
    when = tracking.instant(text)
    return when.timestamp() if when else None


def _mailboxes(conn: sqlite3.Connection) -> tuple[Mailbox, ...]:
    have = _columns(conn, "mailbox_state")
    if not have:
        return ()
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("SELECT * FROM mailbox_state ORDER BY mailbox").fetchall()
    finally:
        conn.row_factory = None
    out = []
    for r in rows:
        row = dict(r)
        up = not row.get("failing") and row.get("state") not in ("failing", "stopped")
        out.append(Mailbox(label(row["mailbox"]), up, _epoch(row.get("last_ok_at"))))
    return tuple(out)


def _relays(conn: sqlite3.Connection) -> dict[str, bool]:
    if "failing" not in _columns(conn, "relay_state"):
        return {}
    return {
        label(r): not failing
        for r, failing in conn.execute(
            "SELECT relay, COALESCE(failing, 0) FROM relay_state ORDER BY relay"
        )
    }


def _latency(conn: sqlite3.Connection) -> Latency:
    """The histogram from the rows: Date header (arrival, the sender's word) to received_at.

    Counted in SQL, one pass: only rows fetched from a watched mailbox (a replayed file's
    Date says when it was written, not when it came in).
    """
    row = conn.execute(
        # One SUM per bound of BUCKETS, in order (the zip below refuses a count that differs).
        "SELECT COUNT(*), COUNT(s), COALESCE(SUM(s), 0),"
        " SUM(s <= 1), SUM(s <= 5), SUM(s <= 15), SUM(s <= 30), SUM(s <= 60), SUM(s <= 120),"
        " SUM(s <= 300), SUM(s <= 600), SUM(s <= 1800), SUM(s <= 3600), SUM(s <= 7200),"
        " SUM(s <= 21600), SUM(s <= 86400) FROM ("
        " SELECT CASE WHEN d BETWEEN ? AND ? THEN MAX(d, 0) END AS s FROM ("
        "  SELECT (julianday(received_at) - julianday(date)) * 86400.0 AS d FROM messages"
        "  WHERE source LIKE ? OR source LIKE ?))",
        (-SKEW, OLDEST, *(f"{p}%" for p in MAILBOX_SOURCES)),
    ).fetchone()
    total, counted, seconds, *counts = row
    buckets = tuple(n or 0 for _bound, n in zip(BUCKETS, counts, strict=True))
    return Latency(buckets, counted, float(seconds), total - counted)
