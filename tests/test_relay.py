"""The outbox through a real relay: a private Postfix with SASL (checked by Dovecot), STARTTLS
and SMTPUTF8 on or off, passing what it accepts on to an SMTP sink."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from tests.support import postfix, tickets
from triage.config.endpoints import Secret, Smtp
from triage.core.replies import Ack
from triage.sinks import outbox
from triage.sinks.smtp import stamped
from triage.store.sqlite import Store

from . import servers

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)

pytestmark = pytest.mark.skipif(
    (postfix.skip_reason() or servers.skip_reason() or servers.smtp_skip_reason()) is not None,
    reason=postfix.skip_reason() or servers.skip_reason() or servers.smtp_skip_reason() or "",
)


@pytest.fixture
def dovecot(tmp_path):
    server = servers.Dovecot.start(tmp_path, auth_socket=True)
    yield server
    server.cleanup()


@pytest.fixture
def sink(tmp_path):
    server = servers.SmtpSink.start(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def make_relay(tmp_path, sink, dovecot):
    started: list[postfix.Postfix] = []

    def make(**options) -> postfix.Postfix:
        started.append(
            postfix.Postfix.start(
                tmp_path, relay_to=sink.port, sasl=dovecot.auth_socket, tls=True, **options
            )
        )
        return started[-1]

    yield make
    for relay in started:
        relay.stop()


def queue(db, *recipients: str) -> list[str]:
    """One acknowledgement row per recipient, headers as the renderer writes them."""
    store = Store(db)
    ids = []
    for n, to in enumerate(recipients):
        mid = f"<relay{n}@msp.example>"
        raw = (
            f"From: support@msp.example\r\nTo: {to}\r\nSubject: [#T-{n + 1:06d}] hello\r\n"
            f"Date: Tue, 10 Mar 2026 14:30:00 +0000\r\nMessage-ID: {mid}\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nWe have your request.\r\n"
        ).encode()
        tickets.make(store.conn, n + 1)
        store.queue_ack(n + 1, None, Ack(to, "hello", mid, raw), NOW)
        ids.append(mid)
    store.close()
    return ids


def drain(db, relay: postfix.Postfix, password_file=None, username="support", now=NOW):
    smtp = Smtp(
        relay.host,
        relay.port,
        "starttls",
        username=username if password_file else None,
        secret=Secret("file", str(password_file)) if password_file else None,
        ca_file=str(relay.ca_file),
        timeout=10,
    )
    store = Store(db)
    try:
        return asyncio.run(
            outbox.drain(store, outbox.Sender(smtp, "support@msp.example"), now=lambda: now)
        )
    finally:
        store.close()


def rows(db) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT to_addr, status, attempts, last_error FROM outbox").fetchall()
    finally:
        conn.close()


def test_a_wrong_password_at_postfix_leaves_every_row_pending_until_it_is_right(
    tmp_path, dovecot, sink, make_relay
):
    relay = make_relay()
    db = tmp_path / "t.db"
    queue(db, *(f"user{n}@acme.example" for n in range(4)))
    pw = tmp_path / "pw"
    pw.write_text("not-it\n")
    result = drain(db, relay, pw)
    assert result.relay_error.startswith("login as support refused: 535 5.7.8")
    assert (result.sent, result.failed, result.deferred) == (0, 0, 0)
    assert {r[1:] for r in rows(db)} == {("pending", 0, None)}
    pw.write_text(dovecot.users["support"] + "\n")
    assert drain(db, relay, pw, now=NOW + timedelta(minutes=1)).sent == 4
    delivered = sink.wait_for(4, timeout=30)
    assert sorted(rcpts[0] for _f, rcpts, _raw in delivered) == [
        f"user{n}@acme.example" for n in range(4)
    ]
    assert "authentication failed" in relay.log_text()


def test_relaying_without_a_login_is_the_relays_failure_not_the_rows(tmp_path, sink, make_relay):
    """Postfix answers each RCPT `554 5.7.1 Relay access denied`: no recipient is wrong."""
    relay = make_relay()
    db = tmp_path / "t.db"
    queue(db, "jane@acme.example", "bob@acme.example")
    result = drain(db, relay)
    assert "Relay access denied" in result.relay_error
    assert {r[1:] for r in rows(db)} == {("pending", 0, None)}


def test_a_non_ascii_recipient_goes_through_postfix_with_smtputf8(
    tmp_path, dovecot, sink, make_relay
):
    relay = make_relay(smtputf8=True)
    db = tmp_path / "t.db"
    pw = tmp_path / "pw"
    pw.write_text(dovecot.users["support"] + "\n")
    queue(db, "jürgen@müller.example")
    assert drain(db, relay, pw).sent == 1
    ((_from, rcpts, raw),) = sink.wait_for(1, timeout=30)
    assert rcpts == ["jürgen@müller.example"]
    assert "\r\nTo: jürgen@müller.example\r\n".encode() in raw and b"=?utf-8?" not in raw


def test_without_smtputf8_at_postfix_a_non_ascii_recipient_fails_alone(
    tmp_path, dovecot, sink, make_relay
):
    relay = make_relay(smtputf8=False)
    db = tmp_path / "t.db"
    pw = tmp_path / "pw"
    pw.write_text(dovecot.users["support"] + "\n")
    queue(db, "jürgen@müller.example", "jane@acme.example")
    result = drain(db, relay, pw)
    assert (result.sent, result.failed, result.relay_error) == (1, 1, None)
    by_to = {r[0]: r for r in rows(db)}
    assert by_to["jane@acme.example"][1] == "sent"
    assert by_to["jürgen@müller.example"][1:3] == ("failed", 1)
    assert "SMTPUTF8" in by_to["jürgen@müller.example"][3]
    ((_from, rcpts, _raw),) = sink.wait_for(1, timeout=30)
    assert rcpts == ["jane@acme.example"]


@pytest.mark.parametrize(
    ("raw", "date", "has_id"),
    [
        (
            b"To: a@b\r\nDate: Mon, 1 Jan 2001 00:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\nhi\r\n",
            1,
            1,
        ),
        (b"To: a@b\r\nDate: Mon,\r\n 1 Jan 2001 00:00:00 +0000\r\nX: y\r\n\r\nhi\r\n", 1, 1),
        (b"To: a@b\r\nSubject: no date\r\n\r\nDate: in the body stays\r\n", 1, 1),
    ],
)
def test_stamped_sets_one_date_and_keeps_or_adds_one_message_id(raw, date, has_id):
    out = stamped(raw, NOW, "msp.example")
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert [ln for ln in lines if ln.lower().startswith(b"date:")] == [
        b"Date: Tue, 10 Mar 2026 14:30:00 +0000"
    ]
    assert not any(ln.startswith(b" 1 Jan") for ln in lines)  # the old folded date is gone
    assert sum(ln.lower().startswith(b"message-id:") for ln in lines) == has_id
    assert body == raw.partition(b"\r\n\r\n")[2]
