"""Prometheus metrics: read from the database, printed for node-exporter or served over HTTP.

One set of families, two ways out:

* `text(db)`: the exposition text, for `triage metrics` and node-exporter's textfile collector
  (`write_textfile` writes it atomically);
* `serve(listen, db, live=...)`: an HTTP endpoint the daemon starts on `[daemon] metrics_listen`.
  Every scrape reads the database afresh through its own read-only connection (never the
  daemon's), so what Prometheus sees is what is committed, and a scrape cannot hold a write lock.

What only a running daemon knows (OAuth tokens' expiry, ingest latency measured on its own
clock) it hands to `Live`; without one, the latency histogram is read from the rows. The
values come from `triage.desk.snapshot` (its SQL in `triage.store.desk.queries`); `families`
is pure.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
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

from triage.core.sla import tracking
from triage.desk.listen import Listen
from triage.desk.snapshot import BUCKETS, OLDEST, SKEW, Latency, Live, Snapshot, label, read
from triage.store.desk.readonly import connect

__all__ = [
    "BUCKETS",
    "Collector",
    "Latency",
    "Live",
    "Server",
    "Snapshot",
    "families",
    "read",
    "registry",
    "serve",
    "text",
    "write_textfile",
]


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
                tokens.add_metric([label(name)], (expires - now).total_seconds())
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
                snap = read(conn, now, self.policies, self.threshold, latency=self.live is None)
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
