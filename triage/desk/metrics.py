"""Prometheus metrics: read from the database, printed for node-exporter or served over HTTP.

One set of families, two ways out:

* `text(db)`: the exposition text, for `triage metrics` and node-exporter's textfile collector
  (`write_textfile` writes it atomically);
* `serve(listen, db, live=...)`: an HTTP endpoint the daemon starts on `[daemon] metrics_listen`.
  Every scrape reads the database afresh through its own read-only connection (never the
  daemon's), so what Prometheus sees is what is committed, and a scrape cannot hold a write lock.

What only a running daemon knows (OAuth tokens' expiry, ingest latency measured on its own
clock) it hands to `Live`; without one, the latency histogram is read from the rows. `read` is
the only part with SQL; `families` turns the values into metric families and is pure.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import start_http_server
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from triage.desk.listen import Listen
from triage.desk.readonly import connect
from triage.service import tracking

# Ingest latency: seconds from a message's arrival to its row being committed. Buckets from a
# second (IDLE at work) to a day (a mailbox that was down overnight).
BUCKETS: tuple[float, ...] = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
# From the rows, arrival is the Date header: the sender's word. Outside this window it is a lie
# or a clock out of step, and the row is counted in triage_ingest_latency_skipped_total instead.
SKEW = 300.0  # a Date up to five minutes after storing: the sender's clock ahead, read as 0 s
OLDEST = 7 * 86400.0  # older than a week before storing: not a latency we can believe
MAILBOX_SOURCES = ("imap:", "graph:")  # rows fetched from a watched mailbox, not replayed files
OPEN_EXCLUDES = ("resolved", "closed")  # the lifecycle's states that leave the queue
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
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _label(value: object) -> str:
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
        key = (_label(action), _label(reason))
        messages[key] = messages.get(key, 0) + n
    marks = ",".join("?" for _ in OPEN_EXCLUDES)
    # Every priority ever used is listed (0 when none is open), so a series does not vanish
    # when the last ticket of a priority is closed.
    open_tickets = {
        _label(p): n
        for p, n in conn.execute(
            f"SELECT COALESCE(priority, ''), SUM(status NOT IN ({marks})) FROM tickets GROUP BY 1",
            OPEN_EXCLUDES,
        )
    }
    tracked = [
        tracking.from_row(r)
        for r in conn.execute(
            f"SELECT {tracking.COLUMNS} FROM tickets WHERE first_response_at IS NULL"
            f" AND response_due IS NOT NULL AND status NOT IN ({marks}) ORDER BY id",
            OPEN_EXCLUDES,
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
        out.append(Mailbox(_label(row["mailbox"]), up, _epoch(row.get("last_ok_at"))))
    return tuple(out)


def _relays(conn: sqlite3.Connection) -> dict[str, bool]:
    if "failing" not in _columns(conn, "relay_state"):
        return {}
    return {
        _label(r): not failing
        for r, failing in conn.execute(
            "SELECT relay, COALESCE(failing, 0) FROM relay_state ORDER BY relay"
        )
    }


def _latency(conn: sqlite3.Connection) -> Latency:
    """The histogram from the rows: Date header (arrival, the sender's word) to received_at.

    Counted in SQL, one pass: only rows fetched from a watched mailbox (a replayed file's
    Date says when it was written, not when it came in).
    """
    where = " OR ".join("source LIKE ?" for _ in MAILBOX_SOURCES)
    cases = ", ".join(f"SUM(s <= {b})" for b in BUCKETS)
    row = conn.execute(
        f"SELECT COUNT(*), COUNT(s), COALESCE(SUM(MAX(s, 0)), 0), {cases} FROM ("
        f" SELECT CASE WHEN d BETWEEN ? AND ? THEN MAX(d, 0) END AS s FROM ("
        f"  SELECT (julianday(received_at) - julianday(date)) * 86400.0 AS d FROM messages"
        f"  WHERE ({where})))",
        (-SKEW, OLDEST, *(f"{p}%" for p in MAILBOX_SOURCES)),
    ).fetchone()
    total, counted, seconds, *buckets = row
    return Latency(tuple(b or 0 for b in buckets), counted, float(seconds), total - counted)


# --------------------------------------------------------------------------- families (pure)


def families(snap: Snapshot | None, now: datetime, live: Live | None = None) -> list[Metric]:
    """The metric families for `snap` (None: the database could not be read)."""
    up = GaugeMetricFamily(
        "triage_database_up",
        "1 when the database was read for this scrape, 0 when it could not be (see the logs).",
        value=0 if snap is None else 1,
    )
    out: list[Metric] = [up]
    if live is not None:
        tokens = GaugeMetricFamily(
            "triage_oauth_token_seconds_left",
            "Seconds until the OAuth access token a mailbox uses expires (negative: expired).",
            labels=["mailbox"],
        )
        for name, expires in sorted(live.tokens().items()):
            if expires is not None:
                tokens.add_metric([_label(name)], (expires - now).total_seconds())
        out.append(tokens)
    if snap is None:
        return out
    messages = CounterMetricFamily(
        "triage_messages",
        "Messages stored, by what was done (ticket, append, filtered, review, quarantined)"
        " and the rule that decided (empty for tickets and appends).",
        labels=["action", "reason"],
    )
    for (action, reason), n in sorted(snap.messages.items()):
        messages.add_metric([action, reason], n)
    out.append(messages)
    opened = GaugeMetricFamily(
        "triage_tickets_open", "Tickets not resolved or closed, by priority.", labels=["priority"]
    )
    for priority, n in sorted(snap.open_tickets.items()):
        opened.add_metric([priority], n)
    out.append(opened)
    out.append(
        GaugeMetricFamily(
            "triage_tickets_breached_open",
            "Open tickets with no first response, past their response deadline.",
            value=snap.breached_open,
        )
    )
    if snap.at_risk_open is not None:
        out.append(
            GaugeMetricFamily(
                "triage_tickets_at_risk_open",
                "Open tickets with no first response that have used the warning share of their"
                " time (not yet breached).",
                value=snap.at_risk_open,
            )
        )
    for name, what, counts in (
        ("triage_outbox_pending", "waiting to be sent (or being sent)", snap.outbox_pending),
        ("triage_outbox_failed", "that failed for good", snap.outbox_failed),
    ):
        family = GaugeMetricFamily(
            name,
            f"Outbox rows {what}, by kind (ack: acknowledgements, alert: mail to the operator).",
            labels=["kind"],
        )
        for kind, n in sorted(counts.items()):
            family.add_metric([kind], n)
        out.append(family)
    mailbox_up = GaugeMetricFamily(
        "triage_mailbox_up",
        "1 while the daemon last found the mailbox working, 0 while failing or stopped.",
        labels=["mailbox"],
    )
    last = GaugeMetricFamily(
        "triage_mailbox_last_success_timestamp_seconds",
        "When the daemon last completed a round on the mailbox (Unix time).",
        labels=["mailbox"],
    )
    for m in snap.mailboxes:
        mailbox_up.add_metric([m.name], 1 if m.up else 0)
        if m.last_success is not None:
            last.add_metric([m.name], m.last_success)
    out += [mailbox_up, last]
    relay_up = GaugeMetricFamily(
        "triage_relay_up",
        "1 while the SMTP relay last accepted a round, 0 while failing.",
        labels=["relay"],
    )
    for relay, ok in sorted(snap.relays.items()):
        relay_up.add_metric([relay], 1 if ok else 0)
    out.append(relay_up)
    out.append(
        GaugeMetricFamily(
            "triage_review_held",
            "Messages held for a person's review (`triage review`).",
            value=snap.review_held,
        )
    )
    latency = live.latency if live is not None else snap.latency
    out += _histogram(latency, "live" if live is not None else "rows")
    return out


def _histogram(lat: Latency, source: str) -> list[Metric]:
    how = (
        "measured by the daemon from each message's arrival on the server"
        if source == "live"
        else "read from the rows: the Date header (the sender's clock) to the stored time"
    )
    hist = HistogramMetricFamily(
        "triage_ingest_latency_seconds",
        f"Seconds from a message's arrival to its row being committed, {how}.",
        buckets=[
            *((_bound(b), n) for b, n in zip(BUCKETS, lat.buckets, strict=True)),
            ("+Inf", lat.count),
        ],
        sum_value=lat.total,
    )
    skipped = CounterMetricFamily(
        "triage_ingest_latency_skipped",
        "Messages left out of triage_ingest_latency_seconds: arrival unknown, or more than"
        f" {SKEW:g} s after storing or {OLDEST / 86400:g} days before it.",
        value=lat.skipped,
    )
    return [hist, skipped]


def _bound(b: float) -> str:
    return floatToGoString(b)


# --------------------------------------------------------------------------- out


class Collector:
    """A prometheus_client collector: one database read per scrape."""

    def __init__(
        self,
        db: Path,
        live: Live | None = None,
        policies: Mapping | None = None,
        threshold: float = tracking.THRESHOLD,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = Path(db)
        self.live = live
        self.policies = policies
        self.threshold = threshold
        self.clock = clock
        self.last_error: str | None = None

    def collect(self) -> Iterable[Metric]:
        now = self.clock()
        try:
            conn = connect(self.db)
            try:
                snap = read(conn, now, self.policies, self.threshold)
            finally:
                conn.close()
            self.last_error = None
        except (OSError, sqlite3.Error) as exc:
            # A scrape that cannot read the database still answers, with triage_database_up 0,
            # so an alert can say so (a 500 would look like the daemon itself being down).
            snap = None
            self.last_error = f"{self.db}: {exc}"
        return families(snap, now, self.live)


def registry(collector: Collector) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg


def text(
    db: Path,
    policies: Mapping | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> str:
    """The exposition text `triage metrics` prints. FileNotFoundError / sqlite3.Error when the
    database cannot be read (a command must fail, where a scrape reports 0)."""
    conn = connect(db)
    try:
        now = clock()
        snap = read(conn, now, policies)
    finally:
        conn.close()

    class _Fixed:
        def collect(self):
            return families(snap, now)

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Fixed())
    return generate_latest(reg).decode("utf-8")


def write_textfile(db: Path, target: Path, policies: Mapping | None = None) -> None:
    """Write `text(db)` to `target` for node-exporter's textfile collector, atomically (a
    temporary file in the same folder, then a rename: the collector never reads half a file)."""
    body = text(db, policies)
    target = Path(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(body)
        os.chmod(tmp, 0o644)  # node-exporter runs as its own user
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class Server:
    """A running metrics endpoint; `close` stops it and waits for its thread."""

    host: str
    port: int
    _httpd: object
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._httpd.shutdown()  # type: ignore[attr-defined]
        self._httpd.server_close()  # type: ignore[attr-defined]
        self._thread.join(timeout=5)


def serve(
    listen: Listen,
    db: Path,
    live: Live | None = None,
    policies: Mapping | None = None,
    threshold: float = tracking.THRESHOLD,
) -> Server:
    """Start serving the families on `listen` in a background thread (what the daemon calls
    for `[daemon] metrics_listen`). OSError when the address cannot be bound."""
    collector = Collector(db, live, policies, threshold)
    httpd, thread = start_http_server(listen.port, addr=listen.host, registry=registry(collector))
    port = httpd.server_address[1]
    return Server(listen.host, port, httpd, thread)
