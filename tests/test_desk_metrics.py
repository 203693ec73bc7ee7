"""Prometheus metrics from the database: the textfile for node-exporter and a real HTTP scrape.

Every assertion reads the exposition text back with prometheus-client's own parser.
"""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT
from tests.servers import free_port
from tests.support.desk import demo_db
from triage.core import sla
from triage.desk import metrics
from triage.desk.listen import Listen
from triage.store import mailboxes
from triage.store.sqlite import Store

NOW = datetime(2026, 3, 11, 14, 0, tzinfo=UTC)  # a Wednesday


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, from exposition text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(got: dict, name: str, **labels: str) -> float:
    return got[(name, tuple(sorted(labels.items())))]


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return response.read().decode("utf-8")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_db(tmp_path_factory.mktemp("demo"), now=NOW)


def database_of(store: Store):
    """What the metrics read: the SQLite file, or the PostgreSQL database (the conftest
    `store` runs each test below on both)."""
    return store.path if store.path is not None else store.database


def test_the_demo_database_counts_what_replay_decided(demo):
    got = samples(metrics.text(demo.path, clock=lambda: NOW))
    assert value(got, "triage_database_up") == 1
    assert value(got, "triage_messages_total", action="ticket", reason="") == 22
    assert value(got, "triage_messages_total", action="append", reason="") == 2
    assert value(got, "triage_messages_total", action="filtered", reason="subject-auto-reply") == 3
    assert value(got, "triage_messages_total", action="review", reason="sow-from-info") == 1
    opened = {k[1][0][1]: v for k, v in got.items() if k[0] == "triage_tickets_open"}
    assert opened == {"P1": 2, "P2": 2, "P3": 17, "P4": 1}
    assert value(got, "triage_tickets_breached_open") == 1  # T-000001, replayed 3 hours early
    assert value(got, "triage_review_held") == 2
    # Replayed files are not mail that arrived: their Date is when they were written.
    assert value(got, "triage_ingest_latency_seconds_count") == 0
    assert value(got, "triage_ingest_latency_skipped_total") == 0
    assert ("triage_tickets_at_risk_open", ()) not in got  # no policies given: not computed


def test_at_risk_counts_on_the_policy_calendar(demo):
    policies = sla.load_policies(ROOT / "rules" / "sla")
    # 1h36m later: T-000013 (P1, standard: 2 hours, 24/5) has used 80 %, past the 75 % mark.
    later = NOW + timedelta(minutes=96)
    got = samples(metrics.text(demo.path, policies, clock=lambda: later))
    assert value(got, "triage_tickets_at_risk_open") == 1
    assert value(got, "triage_tickets_breached_open") == 1


def test_a_closed_ticket_leaves_the_open_count_and_its_series_stays_at_zero(store: Store):
    for n, (priority, status) in enumerate([("P1", "open"), ("P2", "closed"), ("P2", "resolved")]):
        store.conn.execute(
            "INSERT INTO tickets (number, status, requester, created_at, priority)"
            " VALUES (?, ?, 'a@example.com', '2026-03-11T10:00:00Z', ?)",
            (f"T-00000{n + 1}", status, priority),
        )
    got = samples(metrics.text(database_of(store), clock=lambda: NOW))
    assert value(got, "triage_tickets_open", priority="P1") == 1
    assert value(got, "triage_tickets_open", priority="P2") == 0


def test_outbox_rows_by_kind_and_state(store: Store):
    store.conn.execute(
        "INSERT INTO tickets (id, number, status, requester, created_at)"
        " VALUES (1, 'T-000001', 'open', 'a@example.com', '2026-03-11T10:00:00Z')"
    )
    rows = [(1, "pending")] * 3 + [(1, "sending"), (1, "failed"), (1, "sent"), (None, "failed")]
    for ticket, status in rows:
        store.conn.execute(
            "INSERT INTO outbox (ticket_id, to_addr, status, created_at)"
            " VALUES (?, 'a@example.com', ?, '2026-03-11T10:00:00Z')",
            (ticket, status),
        )
    got = samples(metrics.text(database_of(store), clock=lambda: NOW))
    assert value(got, "triage_outbox_pending", kind="ack") == 4  # pending and being sent
    assert value(got, "triage_outbox_pending", kind="alert") == 0
    assert value(got, "triage_outbox_failed", kind="ack") == 1
    assert value(got, "triage_outbox_failed", kind="alert") == 1


def test_mailboxes_up_and_their_last_good_round(store: Store):
    mailboxes.update(store, "support", state="idle", failing=0, last_ok_at="2026-03-11T13:59:00Z")
    mailboxes.update(store, "sales", state="failing", failing=1, last_ok_at="2026-03-10T08:00:00Z")
    mailboxes.update(store, "new", state="connecting")
    got = samples(metrics.text(database_of(store), clock=lambda: NOW))
    up = "triage_mailbox_up"
    assert [value(got, up, mailbox=m) for m in ("support", "sales", "new")] == [1, 0, 1]
    last = "triage_mailbox_last_success_timestamp_seconds"
    assert (
        value(got, last, mailbox="support") == datetime(2026, 3, 11, 13, 59, tzinfo=UTC).timestamp()
    )
    assert value(got, last, mailbox="sales") == datetime(2026, 3, 10, 8, tzinfo=UTC).timestamp()
    assert (last, (("mailbox", "new"),)) not in got  # never a good round: no sample, not 0


@pytest.mark.parametrize(
    ("source", "date", "received", "bucket"),
    [
        ("imap:support/1/7", "2026-03-11T13:59:57Z", "2026-03-11T14:00:00Z", 5),  # 3 s
        ("imap:support/1/8", "2026-03-11T13:58:20Z", "2026-03-11T14:00:00Z", 120),  # 100 s
        ("imap:support/1/9", "2026-03-11T14:04:00Z", "2026-03-11T14:00:00Z", 1),  # clock ahead
        ("imap:support/1/10", "2026-03-11T15:00:00Z", "2026-03-11T14:00:00Z", None),  # lie
        ("imap:support/1/11", "2026-02-01T14:00:00Z", "2026-03-11T14:00:00Z", None),  # too old
        ("imap:support/1/12", None, "2026-03-11T14:00:00Z", None),  # no Date
        ("/srv/mail/a.eml", "2026-03-11T13:59:57Z", "2026-03-11T14:00:00Z", "ignored"),
    ],
)
def test_ingest_latency_from_the_rows(store: Store, source, date, received, bucket):
    store.conn.execute(
        "INSERT INTO messages (message_key, action, source, date, received_at)"
        " VALUES ('k', 'ticket', ?, ?, ?)",
        (source, date, received),
    )
    got = samples(metrics.text(database_of(store), clock=lambda: NOW))
    h = "triage_ingest_latency_seconds"
    skipped = value(got, "triage_ingest_latency_skipped_total")
    if bucket == "ignored":
        assert (value(got, f"{h}_count"), skipped) == (0, 0)
    elif bucket is None:
        assert (value(got, f"{h}_count"), skipped) == (0, 1)
    else:
        assert (value(got, f"{h}_count"), skipped) == (1, 0)
        below = [b for b in metrics.BUCKETS if b < bucket]
        assert all(value(got, f"{h}_bucket", le=f"{float(b)}") == 0 for b in below)
        assert value(got, f"{h}_bucket", le=f"{float(bucket)}") == 1


def test_the_textfile_is_written_whole_and_readable_by_node_exporter(demo, tmp_path: Path):
    target = tmp_path / "triage.prom"
    target.write_text("old", encoding="utf-8")
    metrics.write_textfile(demo.path, target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert value(samples(target.read_text(encoding="utf-8")), "triage_database_up") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["triage.prom"]  # no temporary left


def test_a_missing_database_fails_the_command_with_the_fix(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="fix: pass the daemon's database"):
        metrics.text(tmp_path / "nothere.db")


def test_a_real_scrape_over_http_with_what_the_daemon_knows(demo, tmp_path: Path):
    db = tmp_path / "triage.db"
    db.write_bytes(demo.path.read_bytes())
    live = metrics.Live()
    arrived = datetime.now(UTC) - timedelta(seconds=42)
    live.observe_batch([arrived], arrived + timedelta(seconds=42))
    live.observe_batch([None], arrived)  # arrival unknown: skipped, not counted as 0
    live.token("support", datetime.now(UTC) + timedelta(minutes=50))
    live.token("graph", None)  # not known: no sample
    server = metrics.serve(Listen.parse(f"127.0.0.1:{free_port()}"), db, live=live)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        got = samples(scrape(server.url))
        assert value(got, "triage_database_up") == 1
        assert value(got, "triage_messages_total", action="ticket", reason="") == 22
        assert value(got, "triage_ingest_latency_seconds_count") == 1
        assert value(got, "triage_ingest_latency_seconds_bucket", le="30.0") == 0
        assert value(got, "triage_ingest_latency_seconds_bucket", le="60.0") == 1
        assert value(got, "triage_ingest_latency_skipped_total") == 1
        left = value(got, "triage_oauth_token_seconds_left", mailbox="support")
        assert 49 * 60 < left <= 50 * 60
        assert ("triage_oauth_token_seconds_left", (("mailbox", "graph"),)) not in got

        # The next scrape reads afresh: a row committed since is counted.
        writer = sqlite3.connect(db)
        with writer:
            writer.execute(
                "INSERT INTO messages (message_key, action, reason, received_at)"
                " VALUES ('new', 'filtered', 'x-loop', '2026-03-11T14:00:00Z')"
            )
        writer.close()
        got = samples(scrape(server.url))
        assert value(got, "triage_messages_total", action="filtered", reason="x-loop") == 2

        # The database gone: the endpoint still answers, and says so.
        os.rename(db, tmp_path / "moved.db")
        got = samples(scrape(server.url))
        assert value(got, "triage_database_up") == 0
        assert ("triage_messages_total", (("action", "ticket"), ("reason", ""))) not in got
        assert value(got, "triage_oauth_token_seconds_left", mailbox="support") > 0
    finally:
        server.close()
    with pytest.raises(OSError):
        scrape(server.url)  # stopped: nothing answers


def test_serve_refuses_an_address_in_use(demo):
    server = metrics.serve(Listen.parse(f"127.0.0.1:{free_port()}"), demo.path)
    try:
        with pytest.raises(OSError):
            metrics.serve(Listen(server.host, server.port), demo.path)
    finally:
        server.close()


def test_the_example_alert_rules_name_only_metrics_triage_exports():
    rules = yaml.safe_load((ROOT / "docs" / "triage-alerts.yml").read_text(encoding="utf-8"))
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert all(
        r.get("alert") and r.get("annotations", {}).get("summary")
        for g in rules["groups"]
        for r in g["rules"]
    )
    live = metrics.Live()
    live.token("support", NOW)
    families = metrics.families(metrics.Snapshot(at_risk_open=0), NOW, live)
    exported = set()
    for f in families:
        exported |= {s.name for s in f.samples} | {f.name, f"{f.name}_total"}
        if f.type == "histogram":
            exported |= {f"{f.name}_bucket", f"{f.name}_count", f"{f.name}_sum"}
    named = {m for e in exprs for m in re.findall(r"\btriage_[a-z_]+", e)}
    assert named and named <= exported, named - exported
