"""The delivery drainer against real receivers on 127.0.0.1: each row sent once under two
drainers, Retry-After, 5xx then success, a permanent 4xx, a hang, a crash between the
receiver's 200 and our mark; ConnectWise's stand-in gets one ticket, then a note."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.connectwise_standin import (
    CLIENT_ID,
    COMPANY_ID,
    PRIVATE_KEY,
    PUBLIC_KEY,
    ConnectWiseStandIn,
)
from tests.support.http_receiver import HttpReceiver, Reply
from triage.cli import cli
from triage.config import load_config
from triage.core.pipeline import Rules, analyse
from triage.engine.batch import run_batch
from triage.sinks.drainer import Drainer
from triage.sinks.events import Event
from triage.sinks.webhook import new_secret
from triage.store import deliveries
from triage.store.sqlite import Store

from .conftest import ROOT, human

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
SECRET = new_secret(b"k" * 32)


class Clock:
    def __init__(self, at: datetime = NOW) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def config_file(tmp_path: Path, url: str, **extra: object) -> Path:
    (tmp_path / "hook.secret").write_text(SECRET + "\n")
    (tmp_path / "hook.secret").chmod(0o600)
    lines = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in extra.items())
    path = tmp_path / "triage.toml"
    path.write_text(
        f'[store]\ndb = "{tmp_path / "t.db"}"\n\n[[sink]]\nname = "hook"\nkind = "webhook"\n'
        f'url = "{url}"\nsecret_file = "hook.secret"\nallow_insecure = true\n'
        'events = ["ticket.created", "ticket.appended", "message.quarantined"]\n' + lines
    )
    return path


def queue_events(config_path: Path, n: int) -> list[str]:
    """`n` pending deliveries (message.quarantined events); their delivery ids."""
    config = load_config(config_path)
    store = Store(config.db, config.ticket_prefix)
    for i in range(n):
        event = Event.quarantined(f"evt_{i}", NOW, source=f"m{i}.eml", message_id=None, error="x")
        deliveries.queue(store.conn, config.sinks, event, NOW)
    ids = [r[0] for r in store.conn.execute("SELECT delivery_id FROM deliveries ORDER BY id")]
    store.close()
    return ids


def row(config_path: Path) -> dict:
    store = Store(load_config(config_path).db)
    [got] = list(store.db.query("SELECT * FROM deliveries"))
    store.close()
    return got


def drain_once(config_path: Path, clock: Clock, **kw):
    config = load_config(config_path)
    store = Store(config.db, config.ticket_prefix)

    async def go():
        drainer = Drainer(store, config, clock=clock, jitter=lambda: 0.5, **kw)
        try:
            return await drainer.round()
        finally:
            await drainer.aclose()

    try:
        return asyncio.run(go())
    finally:
        store.close()


def test_sent_once_with_the_rows_body_and_delivery_id_signed(tmp_path):
    with HttpReceiver.start(secret=SECRET) as rx:
        path = config_file(tmp_path, rx.url)
        [did] = queue_events(path, 1)
        got = drain_once(path, Clock())
        assert got.sent == 1
        [req] = rx.requests
        assert req.verified is True
        assert req.headers["webhook-id"] == did
        assert req.json()["type"] == "message.quarantined"
        assert req.json()["data"]["source"] == "m0.eml"
        assert row(path)["status"] == "sent"
        assert drain_once(path, Clock()).tried == 0  # nothing is sent twice


def test_429_waits_as_long_as_retry_after_asks(tmp_path):
    with HttpReceiver.start(secret=SECRET) as rx:
        rx.then(Reply.status(429, "slow down", retry_after="7"))
        path = config_file(tmp_path, rx.url)
        queue_events(path, 1)
        assert drain_once(path, Clock()).retried == 1
        r = row(path)
        # jitter 0.5 spreads a Retry-After upward only: 7 s * (1 + 0.25 * 0.5)
        assert (r["status"], r["attempts"], r["last_code"]) == ("pending", 1, 429)
        assert r["next_attempt_at"] == deliveries.stamp(NOW + timedelta(seconds=7.875))
        assert drain_once(path, Clock(NOW + timedelta(seconds=7))).tried == 0  # not yet
        assert drain_once(path, Clock(NOW + timedelta(seconds=8))).sent == 1
        assert len(rx.requests) == 2
        assert rx.requests[0].headers["webhook-id"] == rx.requests[1].headers["webhook-id"]


def test_500_then_success_backs_off_then_sends(tmp_path):
    with HttpReceiver.start(secret=SECRET) as rx:
        rx.then(Reply.status(500, "oops"))
        path = config_file(tmp_path, rx.url)
        queue_events(path, 1)
        assert drain_once(path, Clock()).retried == 1
        r = row(path)
        assert r["next_attempt_at"] == deliveries.stamp(NOW + timedelta(seconds=5))  # BASE
        assert "HTTP 500" in r["last_error"]
        assert drain_once(path, Clock(NOW + timedelta(seconds=5))).sent == 1
        r = row(path)
        assert (r["status"], r["attempts"], r["last_error"]) == ("sent", 2, None)


def test_a_permanent_4xx_is_dead_at_once_and_retry_revives_it(tmp_path):
    with HttpReceiver.start(secret=SECRET) as rx:
        rx.then(Reply.status(410, "gone"))
        path = config_file(tmp_path, rx.url)
        queue_events(path, 1)
        assert drain_once(path, Clock()).dead == 1
        r = row(path)
        assert (r["status"], r["attempts"], r["last_code"]) == ("dead", 1, 410)
        assert drain_once(path, Clock(NOW + timedelta(days=2))).tried == 0  # never again
        listing = CliRunner().invoke(cli, ["outbox", "--config", str(path)])
        assert f"d{r['id']}" in listing.output and "dead" in listing.output
        again = CliRunner().invoke(cli, ["outbox", "retry", "--config", str(path), f"d{r['id']}"])
        assert again.exit_code == 0, again.output
        done = CliRunner().invoke(cli, ["outbox", "send", "--once", "--config", str(path)])
        assert done.exit_code == 0, done.output
        assert "deliveries: 1 sent" in done.output
        assert row(path)["status"] == "sent" and len(rx.requests) == 2


def test_max_attempts_makes_a_row_dead(tmp_path):
    with HttpReceiver.start(secret=SECRET) as rx:
        rx.always(Reply.status(503, "down"))
        path = config_file(tmp_path, rx.url, max_attempts=2)
        queue_events(path, 1)
        drain_once(path, Clock())
        assert drain_once(path, Clock(NOW + timedelta(minutes=1))).dead == 1
        r = row(path)
        assert r["status"] == "dead" and r["last_error"].startswith("gave up after 2 attempts")


def test_drop_keeps_a_row_from_being_sent(tmp_path):
    with HttpReceiver.start(secret=SECRET) as rx:
        path = config_file(tmp_path, rx.url)
        queue_events(path, 1)
        done = CliRunner().invoke(cli, ["outbox", "drop", "--config", str(path), "d1"])
        assert done.exit_code == 0, done.output
        assert drain_once(path, Clock()).tried == 0 and rx.requests == []
        assert row(path)["status"] == "dropped"


def test_a_hang_times_out_and_is_retried_with_the_same_id(tmp_path):
    with HttpReceiver.start(secret=SECRET) as rx:
        rx.then(Reply.hang())
        path = config_file(tmp_path, rx.url, timeout=1)
        queue_events(path, 1)
        started = time.monotonic()
        assert drain_once(path, Clock()).retried == 1
        assert time.monotonic() - started < 5
        assert "no answer" in row(path)["last_error"]
        rx.release()
        assert drain_once(path, Clock(NOW + timedelta(seconds=5))).sent == 1
        ids = {r.headers["webhook-id"] for r in rx.requests}
        assert len(rx.requests) == 2 and len(ids) == 1


def test_two_drainers_at_once_send_each_row_once(tmp_path):
    with HttpReceiver.start(secret=SECRET) as rx:
        path = config_file(tmp_path, rx.url, rate_limit=1000)
        ids = queue_events(path, 200)
        config = load_config(path)

        async def both():
            stores = [Store(config.db), Store(config.db)]
            drainers = [Drainer(s, config) for s in stores]
            try:
                return await asyncio.gather(*(d.drain() for d in drainers))
            finally:
                for d, s in zip(drainers, stores, strict=True):
                    await d.aclose()
                    s.close()

        results = asyncio.run(both())
        assert sum(r.sent for r in results) == 200
        assert all(r.sent for r in results)  # both took part
        assert Counter(r.headers["webhook-id"] for r in rx.requests) == Counter(ids)


def test_two_outbox_send_processes_at_once_send_each_row_once(tmp_path):
    with HttpReceiver.start(secret=SECRET) as rx:
        path = config_file(tmp_path, rx.url, rate_limit=1000)
        ids = queue_events(path, 150)
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "triage.cli", "outbox", "send", "--once"]
                + ["--config", str(path)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        assert Counter(r.headers["webhook-id"] for r in rx.requests) == Counter(ids)


def test_a_kill_between_the_receivers_200_and_our_mark_resends_with_the_same_id(tmp_path):
    """The receiver answers 200; the drainer is SIGKILLed before it can record it (the test
    holds the database's write lock meanwhile). The next drainer sends it again, with the
    same webhook-id and the same body, and records it."""
    with HttpReceiver.start(secret=SECRET) as rx:
        path = config_file(tmp_path, rx.url)
        queue_events(path, 1)
        arrived, go = threading.Event(), threading.Event()
        answer = rx.server.handle

        def held(request):
            arrived.set()
            go.wait(30)
            return answer(request)

        rx.server.handle = held
        child = subprocess.Popen(
            [sys.executable, "-m", "triage.cli", "outbox", "send", "--once"]
            + ["--config", str(path)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert arrived.wait(30)
            blocker = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")  # the child's mark must wait for this
            go.set()
            time.sleep(1.0)  # the 200 is back with the child, which waits for the lock
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
            blocker.execute("ROLLBACK")
            blocker.close()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
        rx.server.handle = answer
        assert row(path)["status"] == "sending"  # claimed by a process that is gone
        done = CliRunner().invoke(cli, ["outbox", "send", "--once", "--config", str(path)])
        assert done.exit_code == 0, done.output
        assert row(path)["status"] == "sent"
        first, second = rx.requests
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        assert first.body == second.body and second.verified


def test_a_sinks_rate_limit_spaces_its_requests(tmp_path):
    with HttpReceiver.start(secret=SECRET) as rx:
        path = config_file(tmp_path, rx.url, rate_limit=4)
        queue_events(path, 5)
        drain_once(path, Clock())
        times = sorted(r.at for r in rx.requests)
        assert len(times) == 5
        assert times[-1] - times[0] >= 4 * 0.25 - 0.05


def test_connectwise_standin_gets_one_ticket_then_a_note(tmp_path, monkeypatch):
    with ConnectWiseStandIn.start() as cw:
        (tmp_path / "cw.key").write_text(PRIVATE_KEY + "\n")
        (tmp_path / "cw.key").chmod(0o600)
        monkeypatch.setenv("CW_PUBLIC", PUBLIC_KEY)
        path = tmp_path / "triage.toml"
        path.write_text(
            f'[store]\ndb = "{tmp_path / "t.db"}"\n\n[[sink]]\nname = "psa"\n'
            f'kind = "connectwise"\nsite = "{cw.site}"\nallow_insecure = true\n'
            f'company_id = "{COMPANY_ID}"\npublic_key_env = "CW_PUBLIC"\n'
            f'private_key_file = "cw.key"\nclient_id = "{CLIENT_ID}"\nboard = 1\nstatus = 11\n'
            "priority_map = { P1 = 8, P2 = 7, P3 = 6, P4 = 5 }\n"
            'default_company = "Catchall"\nrate_limit = 100\n'
            'events = ["ticket.created", "ticket.appended"]\n'
        )
        config = load_config(path)
        store = Store(config.db, config.ticket_prefix)
        rules = Rules.load(config)
        first = human()
        reply = human(
            Subject="Re: Printer on floor 2 is jammed",
            Message_ID="<reply1@mail.acme.example>",
            In_Reply_To="<abc123@mail.acme.example>",
            body="Still jammed.\n",
        )
        [d] = run_batch(store, rules, [analyse(first, "m1", rules)], NOW, [first])
        run_batch(store, rules, [analyse(reply, "m2", rules)], NOW, [reply])
        store.close()
        done = CliRunner().invoke(cli, ["outbox", "send", "--once", "--config", str(path)])
        assert done.exit_code == 0, done.output
        assert "deliveries: 2 sent" in done.output
        [ticket] = cw.tickets.values()
        assert ticket["externalXRef"] == d.ticket
        notes = cw.notes[ticket["id"]]  # the initial description is the ticket's first note
        assert len(notes) == 2 and "Still jammed." in notes[-1]["text"]
        again = CliRunner().invoke(cli, ["outbox", "send", "--once", "--config", str(path)])
        assert "deliveries: 0 sent" in again.output
        assert len(cw.tickets) == 1 and len(cw.notes[ticket["id"]]) == 2


@pytest.mark.parametrize("kind", ["slack", "teams"])
def test_chat_sinks_post_p1_tickets(tmp_path, kind):
    with HttpReceiver.start() as rx:
        (tmp_path / "chat.url").write_text(rx.url + "\n")
        path = tmp_path / "triage.toml"
        path.write_text(
            f'[store]\ndb = "{tmp_path / "t.db"}"\n\n[[sink]]\nname = "oncall"\nkind = "{kind}"\n'
            'url_file = "chat.url"\nallow_insecure = true\nevents = ["ticket.created"]\n'
        )
        config = load_config(path)
        store = Store(config.db, config.ticket_prefix)
        rules = Rules.load(config)
        raw = human(Subject="Server is down")
        [d] = run_batch(store, rules, [analyse(raw, "m1", rules)], NOW, [raw])
        store.close()
        done = CliRunner().invoke(cli, ["outbox", "send", "--once", "--config", str(path)])
        assert done.exit_code == 0, done.output
        [req] = rx.requests
        assert d.ticket in req.body.decode()


def test_an_email_sink_mails_on_call_through_the_relay_with_a_stable_message_id(
    tmp_path, smtp_sink
):
    path = tmp_path / "triage.toml"
    path.write_text(
        f'[store]\ndb = "{tmp_path / "t.db"}"\n[identity]\ndomains = ["msp.example"]\n'
        'support_address = "support@msp.example"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_sink.port}\ntls = "none"\n'
        "allow_insecure = true\n\n"
        '[[sink]]\nname = "mail"\nkind = "email"\nto = ["oncall@msp.example"]\n'
        'events = ["message.quarantined"]\nrate_limit = 100\n'
    )
    [did] = queue_events(path, 1)
    done = CliRunner().invoke(cli, ["outbox", "send", "--once", "--config", str(path)])
    assert done.exit_code == 0, done.output
    assert "deliveries: 1 sent" in done.output
    [(sender, rcpts, raw)] = smtp_sink.wait_for(1)
    assert (sender, rcpts) == ("support@msp.example", ["oncall@msp.example"])
    assert f"Message-ID: <alert.{did}.0@msp.example>".encode() in raw
    assert b"Auto-Submitted: auto-generated" in raw
    assert b"m0.eml" in raw
    assert row(path)["status"] == "sent"
