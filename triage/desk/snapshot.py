"""What the metrics are made from: one consistent read of the database, and what the daemon
knows live.

`read` takes a read-only connection and returns a frozen `Snapshot` (its SQL is in
`triage.store.desk.queries`); `Live` is what a running daemon feeds as it works (ingest
latency on its own clock, OAuth tokens' expiry) and every scrape reads. `triage.desk.metrics` turns both into metric
families.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from triage.core.sla import tracking
from triage.store.desk import queries

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

    def plus(self, other: Latency) -> Latency:
        """Both sets of counts together."""
        return Latency(
            tuple(a + b for a, b in zip(self.buckets, other.buckets, strict=True)),
            self.count + other.count,
            self.total + other.total,
            self.skipped + other.skipped,
        )


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
        self._latency = Latency()
        self._tokens: dict[str, datetime | None] = {}

    def observe_batch(self, arrivals: Iterable[datetime | None], stored: datetime) -> None:
        """A batch committed at `stored`, one arrival per message (the server's INTERNALDATE,
        or when the daemon first saw it; None when unknown): one lock for the batch."""
        seen = Latency.of(plausible(arrived, stored) for arrived in arrivals)
        with self._lock:
            self._latency = self._latency.plus(seen)

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


# --------------------------------------------------------------------------- reading


def label(value: object) -> str:
    text = "" if value is None else str(value)
    return text[:LABEL_MAX]


def read(
    conn: sqlite3.Connection,
    now: datetime,
    policies: Mapping | None = None,
    threshold: float = tracking.THRESHOLD,
    latency: bool = True,
) -> Snapshot:
    """Every value the families need, in one read transaction (one consistent snapshot).

    `latency` False: the ingest-latency histogram is not read from the rows (a scan of every
    message); the daemon's endpoint has its own, measured as it works."""
    with queries.one_snapshot(conn):
        return _read(conn, now, policies, threshold, latency)


def _read(conn, now, policies, threshold, latency: bool) -> Snapshot:
    messages: dict[tuple[str, str], int] = {}
    for action, reason, n in queries.message_counts(conn):
        key = (label(action), label(reason))
        messages[key] = messages.get(key, 0) + n
    # Every priority ever used is listed (0 when none is open), so a series does not vanish
    # when the last ticket of a priority is closed. Resolved and closed leave the queue.
    open_tickets = {label(p): n for p, n in queries.open_per_priority(conn)}
    tracked = queries.unanswered_open(conn)
    breached = sum(1 for t in tracked if tracking.is_breached_open(t, now))
    at_risk = None
    if policies is not None:
        # a paused ticket is not tracked: never at risk while it waits on the customer
        numbers, _problems = tracking.at_risk_of(tracked, policies, now, threshold)
        at_risk = len(numbers)
    pending: dict[str, int] = {"ack": 0, "alert": 0}
    failed: dict[str, int] = {"ack": 0, "alert": 0}
    for kind, status, n in queries.outbox_counts(conn):
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
        review_held=queries.review_count(conn),
        latency=_latency(conn) if latency else Latency(),
    )


def _epoch(text: str | None) -> float | None:
    when = tracking.instant(text)
    return when.timestamp() if when else None


def _mailboxes(conn: sqlite3.Connection) -> tuple[Mailbox, ...]:
    out = []
    for row in queries.mailbox_rows(conn):
        up = not row.get("failing") and row.get("state") not in ("failing", "stopped")
        out.append(Mailbox(label(row["mailbox"]), up, _epoch(row.get("last_ok_at"))))
    return tuple(out)


def _relays(conn: sqlite3.Connection) -> dict[str, bool]:
    return {label(r): not failing for r, failing in queries.relay_rows(conn)}


def _latency(conn: sqlite3.Connection) -> Latency:
    """The histogram from the rows: Date header (arrival, the sender's word) to received_at.

    Counted in SQL, one pass: only rows fetched from a watched mailbox (a replayed file's
    Date says when it was written, not when it came in).
    """
    row = queries.latency_counts(conn, SKEW, OLDEST, MAILBOX_SOURCES)
    total, counted, seconds, *counts = row
    buckets = tuple(n or 0 for _bound, n in zip(BUCKETS, counts, strict=True))
    return Latency(buckets, counted, float(seconds), total - counted)
