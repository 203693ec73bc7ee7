"""The outbox and the sink deliveries on PostgreSQL: rows claimed `FOR UPDATE SKIP LOCKED`,
so two drainers at once (two `triage outbox send --once`, or two daemons) send each row once."""

from __future__ import annotations

import email
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from triage.config import load_config
from triage.store import delivery_claims
from triage.store import outbox as outbox_rows

from .conftest import FIXTURES, ROOT
from .test_store_postgres import NOW, config_for, run


def _store(config_path):
    from triage.store.postgres import PostgresStore

    return PostgresStore(load_config(config_path).database)


def test_two_outbox_senders_at_once_on_postgres_send_each_acknowledgement_once(
    tmp_path, postgres_url, smtp_sink
):
    smtp = (
        f'[identity]\ndomains = ["msp.example"]\nsupport_address = "support@msp.example"\n[smtp]\nhost = "127.0.0.1"\n'
        f'port = {smtp_sink.port}\ntls = "none"\nallow_insecure = true\n'
    )
    config = config_for(tmp_path, postgres_url, extra="")
    config.write_text(smtp + config.read_text())
    code, out = run("replay", "--config", str(config), "--now", NOW, str(FIXTURES))
    assert code == 0, out
    store = _store(config)
    try:  # replay queues them as `replay`, never to send; the daemon queues them `pending`
        store.conn.execute("UPDATE outbox SET status = 'pending'")
        queued = [r[0] for r in store.conn.execute("SELECT message_id FROM outbox").fetchall()]
    finally:
        store.close()
    assert len(queued) >= 10
    args = [sys.executable, "-m", "triage.cli", "--log-level", "error", "outbox", "send", "--once"]
    senders = [
        subprocess.Popen([*args, "--config", str(config)], cwd=ROOT, stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    said = [p.communicate(timeout=120)[0].decode() for p in senders]
    assert [p.returncode for p in senders] == [0, 0], said
    sent = [int(s.split(" sent")[0]) for s in said]
    assert sum(sent) == len(queued), said
    smtp_sink.wait_for(len(queued))
    time.sleep(0.3)
    arrived = Counter(email.message_from_bytes(m[2])["Message-ID"] for m in smtp_sink.messages())
    assert arrived == Counter({mid: 1 for mid in queued})
    store = _store(config)
    try:
        states = Counter(r[0] for r in store.conn.execute("SELECT status FROM outbox").fetchall())
        acks = store.conn.execute(
            "SELECT COUNT(*) FROM events WHERE kind = 'auto_reply_sent'"
        ).fetchone()[0]
    finally:
        store.close()
    assert states == Counter({"sent": len(queued)}) and acks == len(queued)


def test_claims_at_once_on_postgres_take_different_rows_and_none_waits(tmp_path, postgres_url):
    config = config_for(tmp_path, postgres_url)
    at = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
    first, second = _store(config), _store(config)
    try:
        for n in range(4):
            first.conn.execute(
                "INSERT INTO outbox (to_addr, subject, raw, status, created_at)"
                " VALUES (?, 's', ?, 'pending', ?)",
                (f"c{n}@example.com", b"x", "2026-03-10T14:00:00Z"),
            )
        # one drainer holds a row in an open transaction: the other skips it, never waits
        first.conn.execute("BEGIN")
        held = first.conn.execute(
            "SELECT id FROM outbox ORDER BY id LIMIT 1 FOR UPDATE"
        ).fetchone()[0]
        started = time.monotonic()
        got = [outbox_rows.claim(second, "b", at, timedelta(minutes=5)) for _ in range(4)]
        waited = time.monotonic() - started
        first.conn.execute("ROLLBACK")
    finally:
        first.close()
        second.close()
    claimed = [r.id for r in got if r is not None]
    assert held not in claimed and len(claimed) == 3 and len(set(claimed)) == 3
    assert got[-1] is None and waited < 2.0


def test_sink_deliveries_claimed_by_two_drainers_at_once_on_postgres_go_to_one_each(
    tmp_path, postgres_url
):
    sink = (
        '\n[[sink]]\nname = "hook"\nkind = "webhook"\nurl = "https://hooks.example/t"\n'
        'events = ["ticket.created", "ticket.appended"]\nsecret_env = "HOOK_SECRET"\n'
    )
    config = config_for(tmp_path, postgres_url, extra=sink)
    code, out = run("replay", "--config", str(config), "--now", NOW, str(FIXTURES))
    assert code == 0, out
    at = datetime(2026, 3, 11, tzinfo=UTC)
    first, second = _store(config), _store(config)
    try:
        # replay queues them as `replay`, never to deliver; the daemon queues them `pending`
        first.conn.execute("UPDATE deliveries SET status = 'pending'")
        pending = first.conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]
        # the first drainer's claim is open (its transaction not yet committed): the second
        # claims the rest at once, without waiting for it
        first.conn.execute("BEGIN")
        mine = delivery_claims.claim(first, {"hook": 5}, "a", at, timedelta(minutes=5))
        started = time.monotonic()
        theirs = delivery_claims.claim(second, {"hook": 100}, "b", at, timedelta(minutes=5))
        waited = time.monotonic() - started
        first.conn.execute("COMMIT")
        again = delivery_claims.claim(second, {"hook": 100}, "b", at, timedelta(minutes=5))
    finally:
        first.close()
        second.close()
    assert pending > 5 and len(mine) == 5 and waited < 2.0
    assert {r.id for r in mine}.isdisjoint(r.id for r in theirs)
    assert len(mine) + len(theirs) == pending and again == []
