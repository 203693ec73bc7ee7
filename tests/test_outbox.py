"""Acknowledgements over a real SMTP server (aiosmtpd): what is sent, retried, refused."""

from __future__ import annotations

import asyncio
import email
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest
from click.testing import CliRunner
from structlog.testing import capture_logs

from tests.support import tickets
from triage import log
from triage.cli import cli
from triage.config import Config
from triage.config.endpoints import Secret, Smtp
from triage.core.pipeline import Action, Decision, Rules
from triage.core.replies import Ack
from triage.core.returned import Returned
from triage.engine.replay import replay
from triage.sinks import outbox
from triage.sources.files import Item
from triage.store.sqlite import Store

from . import servers
from .conftest import ROOT, build, human

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)  # Tuesday


def queue(db, *messages: bytes, config: Config | None = None) -> list:
    """Replay `messages` into `db` (a path, or a store: the conftest `store` on either
    backend) with acknowledgements queued as pending, as the daemon does."""
    config = config or Config(
        db=db if isinstance(db, Path) else Path("unused.db"),
        support_address="support@msp.example",
        own_domains=frozenset({"msp.example"}),
    )
    store = Store(db) if isinstance(db, Path) else db
    store.outbox_status = "pending"
    out = []
    replay(
        [Item(f"m{n}", raw) for n, raw in enumerate(messages)],
        Rules.load(config),
        store,
        NOW,
        out.append,
    )
    if isinstance(db, Path):
        store.close()
    return out


def rows(db) -> list[tuple]:
    sql = "SELECT id, status, attempts, last_error, message_id FROM outbox ORDER BY id"
    if not isinstance(db, Path):  # a store
        return [tuple(r) for r in db.conn.execute(sql).fetchall()]
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def drain(db, sink_port: int, now: datetime = NOW, **smtp) -> outbox.Result:
    store = Store(db)
    sender = outbox.Sender(
        Smtp("127.0.0.1", sink_port, smtp.pop("tls", "none"), **smtp), "support@msp.example"
    )
    try:
        return asyncio.run(outbox.drain(store, sender, now=lambda: now))
    finally:
        store.close()


def test_the_acknowledgement_sent_carries_what_matters(tmp_path, smtp_sink):
    db = tmp_path / "t.db"
    out = queue(db, human(Subject="Re: Re: VPN down for all users", References="<r0@x>"))
    assert out[0].auto_reply and out[0].priority == "P1"
    assert drain(db, smtp_sink.port).sent == 1
    ((mail_from, rcpts, raw),) = smtp_sink.wait_for(1)
    assert (mail_from, rcpts) == ("support@msp.example", ["jane@acme.example"])
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All" and msg["Precedence"] == "auto_reply"
    assert msg["In-Reply-To"] == "<abc123@mail.acme.example>"
    assert msg["References"].split() == ["<r0@x>", "<abc123@mail.acme.example>"]
    assert msg["Subject"] == "[#T-000001] VPN down for all users"
    assert msg["Message-ID"].endswith("@msp.example>")
    text = msg.get_body(("plain",)).get_content()
    assert "ticket T-000001" in text and "Priority: P1" in text
    # connectwise standard (24/5) P1 is 2 h: Tuesday 14:30 UTC + 2 h, shown in UTC (no contact zone)
    assert "We will answer by Tuesday 10 March 2026, 16:30 UTC." in text
    assert msg.get_body(("html",)) is not None
    assert rows(db)[0][1] == "sent"
    assert drain(db, smtp_sink.port).sent == 0  # never sent twice
    assert len(smtp_sink.messages()) == 1


def test_a_reply_to_our_acknowledgement_threads_back(tmp_path, smtp_sink):
    db = tmp_path / "t.db"
    queue(db, human())
    drain(db, smtp_sink.port)
    ack = email.message_from_bytes(smtp_sink.wait_for(1)[0][2])
    reply = build(
        {
            "From": "jane@acme.example",
            "To": "support@msp.example",
            "Subject": "Re: anything",
            "Message-ID": "<answer@acme.example>",
            "In-Reply-To": ack["Message-ID"],
        },
        "It works again.\n",
    )
    assert [(d.action, d.ticket, d.auto_reply) for d in queue(db, reply)] == [
        ("append", "T-000001", False)
    ]


def test_smtp_down_then_back_sends_exactly_once(tmp_path, make_smtp_sink):
    db = tmp_path / "t.db"
    queue(db, human())
    port = servers.free_port()
    result = drain(db, port)  # nothing listens there yet
    assert (result.sent, result.deferred, result.failed) == (0, 0, 0)
    assert "connect" in result.relay_error.lower() and not result.reached
    # the relay's fault, not the row's: no attempt counted, no backoff
    assert rows(db)[0][1:4] == ("pending", 0, None)
    sink = make_smtp_sink(port=port)
    assert drain(db, port).sent == 1
    assert drain(db, port, now=NOW + timedelta(hours=5)).sent == 0
    assert len(sink.wait_for(1)) == 1


def test_permanent_refusal_marks_failed_with_the_servers_answer(tmp_path, make_smtp_sink):
    db = tmp_path / "t.db"
    queue(db, human())
    sink = make_smtp_sink(reply_code=550)
    assert drain(db, sink.port).failed == 1
    ((_, status, attempts, error, _),) = rows(db)
    assert (status, attempts) == ("failed", 1) and error.startswith("550")
    listing = CliRunner().invoke(cli, ["outbox", "--db", str(db)])
    assert listing.exit_code == 0 and "failed" in listing.output and "550" in listing.output
    again = CliRunner().invoke(cli, ["outbox", "retry", "--db", str(db), "1"])
    assert again.exit_code == 0 and rows(db)[0][1] == "pending"


def test_temporary_refusal_is_retried_later(tmp_path, make_smtp_sink):
    db = tmp_path / "t.db"
    queue(db, human())
    sink = make_smtp_sink(reply_code=451)
    assert drain(db, sink.port).deferred == 1
    ((_, status, attempts, error, _),) = rows(db)
    assert (status, attempts) == ("pending", 1) and error.startswith("451")


def test_killed_after_the_server_accepted_but_before_marking_sends_again_after_the_lease(
    tmp_path, smtp_sink, monkeypatch
):
    """Documented behaviour: at least once; the row stays claimed until its lease runs out
    (its drainer may still be at work), then the repeat carries the same Message-ID."""
    db = tmp_path / "t.db"
    queue(db, human())

    def crash(*_args):
        raise SystemExit("killed")

    monkeypatch.setattr(outbox, "mark_sent", crash)
    with pytest.raises(SystemExit):
        drain(db, smtp_sink.port)
    monkeypatch.undo()
    assert rows(db)[0][1] == "sending"
    assert drain(db, smtp_sink.port).sent == 0  # claimed by a drainer that may be alive
    lease = outbox.Sender(Smtp("127.0.0.1", smtp_sink.port, "none"), "x@y").lease
    assert drain(db, smtp_sink.port, now=NOW + lease - timedelta(seconds=1)).sent == 0
    assert drain(db, smtp_sink.port, now=NOW + lease + timedelta(seconds=1)).sent == 1
    first, second = (email.message_from_bytes(m[2]) for m in smtp_sink.wait_for(2))
    assert first["Message-ID"] == second["Message-ID"]
    assert rows(db)[0][1] == "sent"


def pending(db, count: int, start: int = 0, ticket: bool = True) -> list[str]:
    """`count` acknowledgement rows queued straight into the outbox; their Message-IDs."""
    store = Store(db)
    if ticket:
        tickets.make(store.conn, *range(start + 1, start + count + 1))
    ids = []
    for n in range(start, start + count):
        mid = f"<ack{n}@msp.example>"
        raw = build(
            {
                "From": "support@msp.example",
                "To": f"user{n}@acme.example",
                "Subject": f"[#T-{n:06d}] request {n}",
                "Date": "Tue, 10 Mar 2026 14:30:00 +0000",
                "Message-ID": mid,
            },
            f"acknowledgement {n}\n",
        )
        store.queue_ack(
            n + 1 if ticket else None, None, Ack(f"user{n}@acme.example", "s", mid, raw), NOW
        )
        ids.append(mid)
    store.close()
    return ids


def arrived(sink) -> Counter:
    """How often each Message-ID arrived at the sink."""
    return Counter(email.message_from_bytes(raw)["Message-ID"] for _f, _t, raw in sink.messages())


def test_two_drainers_at_once_send_each_row_exactly_once(tmp_path, smtp_sink):
    db = tmp_path / "t.db"
    ids = pending(db, 30)
    stores = [Store(db), Store(db)]
    sender = outbox.Sender(Smtp("127.0.0.1", smtp_sink.port, "none"), "support@msp.example")

    async def both():
        return await asyncio.gather(
            *(
                outbox.drain(s, sender, now=lambda: NOW, owner=f"drainer-{n}")
                for n, s in enumerate(stores)
            )
        )

    try:
        results = asyncio.run(both())
    finally:
        for s in stores:
            s.close()
    assert sum(r.sent for r in results) == 30
    smtp_sink.wait_for(30)
    time.sleep(0.2)
    assert arrived(smtp_sink) == Counter({mid: 1 for mid in ids})
    assert {r[1] for r in rows(db)} == {"sent"}


@pytest.mark.parametrize(
    ("owner", "at_once"),
    [
        (f"{socket.gethostname()}:{2**22 + 17}:dead", True),  # this host, no such process
        (f"{socket.gethostname()}:{os.getpid()}:alive", False),  # this host, still running
        ("another-host:1:remote", False),  # elsewhere: only its lease tells
    ],
)
def test_a_claim_whose_drainer_on_this_host_is_gone_is_taken_back_at_once(
    tmp_path, smtp_sink, owner, at_once
):
    db = tmp_path / "t.db"
    pending(db, 1)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "UPDATE outbox SET status = 'sending', claimed_by = ?, lease_until = ?",
            (owner, "2026-03-10T14:35:00Z"),
        )
    conn.close()
    assert drain(db, smtp_sink.port).sent == (1 if at_once else 0)
    assert rows(db)[0][1] == ("sent" if at_once else "sending")
    assert drain(db, smtp_sink.port, now=NOW + timedelta(minutes=6)).sent == (0 if at_once else 1)


def _config(tmp_path, port: int) -> str:
    path = tmp_path / "triage.toml"
    path.write_text(
        f'[store]\ndb = "{tmp_path / "t.db"}"\n[identity]\ndomains = ["msp.example"]\n'
        'support_address = "support@msp.example"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\nallow_insecure = true\n',
        encoding="utf-8",
    )
    return str(path)


def test_outbox_send_once_drains_every_due_row_and_exits(tmp_path, smtp_sink):
    ids = pending(tmp_path / "t.db", 130)  # more than one round's worth
    done = CliRunner().invoke(
        cli, ["outbox", "send", "--once", "--config", _config(tmp_path, smtp_sink.port)]
    )
    assert done.exit_code == 0, done.output
    assert "130 sent" in done.output
    smtp_sink.wait_for(130)
    assert arrived(smtp_sink) == Counter({mid: 1 for mid in ids})


def test_outbox_send_once_without_an_smtp_table_says_what_to_add(tmp_path):
    pending(tmp_path / "t.db", 1)
    config = tmp_path / "triage.toml"
    config.write_text(f'[store]\ndb = "{tmp_path / "t.db"}"\n', encoding="utf-8")
    done = CliRunner().invoke(cli, ["outbox", "send", "--once", "--config", str(config)])
    assert done.exit_code == 1
    assert "[smtp]" in done.output and "fix:" in done.output


def test_two_outbox_send_once_processes_at_once_never_send_a_row_twice(tmp_path, smtp_sink):
    ids = pending(tmp_path / "t.db", 120)
    config = _config(tmp_path, smtp_sink.port)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "triage.cli", "outbox", "send", "--once", "--config", config],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    smtp_sink.wait_for(120)
    time.sleep(0.2)
    assert arrived(smtp_sink) == Counter({mid: 1 for mid in ids})


def test_starttls_with_auth_and_a_verified_certificate(tmp_path, make_smtp_sink):
    db = tmp_path / "t.db"
    queue(db, human())
    sink = make_smtp_sink(tls=True, auth=("relay", "pw-42"))
    (tmp_path / "pw").write_text("pw-42\n")
    result = drain(
        db,
        sink.port,
        tls="starttls",
        username="relay",
        secret=Secret("file", str(tmp_path / "pw")),
        ca_file=str(sink.ca_file),
    )
    assert result.sent == 1
    envelope = sink.envelopes()[0]
    assert envelope["tls"] and envelope["authenticated"]


def test_untrusted_certificate_is_not_used(tmp_path, make_smtp_sink):
    db = tmp_path / "t.db"
    queue(db, human())
    sink = make_smtp_sink(tls=True)
    result = drain(
        db, sink.port, tls="starttls"
    )  # no CA file: the self-signed certificate is refused
    assert result.sent == 0 and "certificate not trusted" in result.relay_error
    assert rows(db)[0][1:3] == ("pending", 0)


def test_no_more_than_five_acknowledgements_a_day_per_address(store):
    db = store
    out = queue(db, *(human(Message_ID=f"<n{n}@x>", Subject=f"request {n}") for n in range(7)))
    assert [d.auto_reply for d in out] == [True] * 5 + [False] * 2
    assert "already got 5 acknowledgements" in out[5].reply_suppressed
    assert all(d.action == "ticket" for d in out)  # the tickets are still created


def test_a_bounce_of_our_acknowledgement_is_linked_and_stops_further_ones(tmp_path, smtp_sink):
    db = tmp_path / "t.db"
    queue(db, human(From="gone@acme.example"))
    drain(db, smtp_sink.port)
    ack = email.message_from_bytes(smtp_sink.wait_for(1)[0][2])
    bounce = build(
        {
            "From": "Mail Delivery System <MAILER-DAEMON@mx.acme.example>",
            "To": "support@msp.example",
            "Subject": "Undelivered Mail Returned to Sender",
            "Message-ID": "<b1@mx.acme.example>",
            "MIME-Version": "1.0",
            "Content-Type": 'multipart/report; report-type=delivery-status; boundary="R"',
        },
        "--R\nContent-Type: text/plain\n\nsorry\n--R\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.acme.example\n\nFinal-Recipient: rfc822; gone@acme.example\nAction: failed\n"
        "Status: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 user unknown\n"
        f"--R\nContent-Type: text/rfc822-headers\n\nFrom: support@msp.example\nMessage-ID: {ack['Message-ID']}\n"
        "Subject: [#T-000001] x\n--R--\n",
    )
    (d,) = queue(db, bounce)
    assert (d.action, d.reason, d.linked_ticket, d.auto_reply) == (
        "filtered",
        "sow-from-mailer-daemon",
        "T-000001",
        False,
    )
    conn = sqlite3.connect(db)
    assert conn.execute(
        "SELECT kind, json_extract(detail, '$.status') FROM events WHERE kind = 'delivery_failed'"
    ).fetchall() == [("delivery_failed", "5.1.1")]
    assert conn.execute("SELECT status FROM outbox").fetchall() == [("bounced",)]
    (again,) = queue(db, human(From="gone@acme.example", Message_ID="<later@x>", Subject="another"))
    assert (
        again.action == "ticket"
        and again.auto_reply is False
        and "bounced permanently" in again.reply_suppressed
    )


def dsn(ack_id: str, *recipients: str, n: int = 1) -> bytes:
    """A delivery-status report returning our acknowledgement `ack_id`, naming `recipients`."""
    fields = "".join(f"Final-Recipient: rfc822; {r}\n" for r in recipients[:1])
    fields += "".join(f"Original-Recipient: rfc822; {r}\n" for r in recipients[1:])
    return build(
        {
            "From": "Mail Delivery System <MAILER-DAEMON@mx.evil.example>",
            "To": "support@msp.example",
            "Subject": "Undelivered Mail Returned to Sender",
            "Message-ID": f"<dsn{n}@mx.evil.example>",
            "MIME-Version": "1.0",
            "Content-Type": 'multipart/report; report-type=delivery-status; boundary="R"',
        },
        "--R\nContent-Type: text/plain\n\nsorry\n--R\nContent-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; mx.evil.example\n\n{fields}Action: failed\nStatus: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\n"
        f"--R\nContent-Type: text/rfc822-headers\n\nFrom: support@msp.example\nMessage-ID: {ack_id}\n"
        "Subject: [#T-000001] x\n--R--\n",
    )


def bounces(store: Store) -> list[tuple]:
    return [
        tuple(r)
        for r in store.conn.execute("SELECT address, status FROM bounces ORDER BY id").fetchall()
    ]


def test_a_forged_bounce_silences_nobody_else(store):
    """Issue 12.5: a DSN carrying the Message-ID of the attacker's own acknowledgement but
    naming jane@acme.example counts for nobody: that acknowledgement went to the attacker."""
    db = store
    queue(db, human(From="eve@evil.example", Message_ID="<eve1@evil.example>"))
    ((_, _, _, _, ack_id),) = rows(db)
    (d,) = queue(db, dsn(ack_id, "jane@acme.example"))
    assert (d.action, d.linked_ticket, d.bounce) == ("filtered", "T-000001", None)
    assert any("not counted" in r and "eve@evil.example" in r for r in d.reasons)
    assert bounces(db) == []
    assert [r[1] for r in rows(db)] == ["pending"]  # the acknowledgement itself is not marked
    (jane,) = queue(db, human(Message_ID="<jane1@acme.example>"))
    assert (jane.action, jane.auto_reply, jane.reply_suppressed) == ("ticket", True, None)


@pytest.mark.parametrize(
    "named",
    [
        ("gone@acme.example",),
        (),  # a plain bounce that names no recipient: the acknowledgement's own
        ("gone@forwarded.example", "gone@acme.example"),  # forwarded on: the original recipient
        ("GONE@ACME.EXAMPLE",),
    ],
)
def test_a_bounce_counts_for_the_address_the_acknowledgement_went_to(store, named):
    db = store
    queue(db, human(From="gone@acme.example", Message_ID="<g1@acme.example>"))
    ((_, _, _, _, ack_id),) = rows(db)
    (d,) = queue(db, dsn(ack_id, *named))
    assert d.bounce is not None and d.bounce.recipient == "gone@acme.example"
    assert bounces(db) == [("gone@acme.example", "5.1.1")]
    (again,) = queue(db, human(From="gone@acme.example", Message_ID="<g2@x>", Subject="more"))
    assert "bounced permanently" in again.reply_suppressed


def test_the_store_remembers_a_bounce_only_for_the_acknowledgements_recipient(store):
    """Checked where the row is written too, whoever builds the decision."""
    db = store
    queue(db, human(From="eve@evil.example", Message_ID="<e1@evil.example>"))
    ((_, _, _, _, ack_id),) = rows(db)
    forged = Decision(
        "m",
        Action.FILTERED,
        "<k@x>",
        "<k@x>",
        reason="sow-from-mailer-daemon",
        linked_ticket="T-000001",
        bounce=Returned((ack_id,), "jane@acme.example", "5.1.1", "failed", None),
    )
    store.begin()
    store.record(forged, NOW)
    store.commit()
    assert bounces(db) == []


# --------------------------------------------------------------------------- rows that cannot go


def queued(
    db, to: str, mid: str, ticket: int | None = 1, date: str = "Tue, 10 Mar 2026 14:30:00 +0000"
) -> None:
    """One row for `to`, its headers as the renderers write them (addresses never encoded)."""
    head = f"From: support@msp.example\r\nTo: {to}\r\nSubject: [#T-000001] hello\r\n"
    if date:
        head += f"Date: {date}\r\n"
    if mid:
        head += f"Message-ID: {mid}\r\n"
    raw = (
        head + "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello.\r\n"
    ).encode()
    store = Store(db)
    if ticket is None:
        store.queue_alert(Ack(to, "alert", mid, raw), NOW)
    else:
        tickets.make(store.conn, ticket)
        store.queue_ack(ticket, None, Ack(to, "s", mid, raw), NOW)
    store.close()


def test_a_non_ascii_recipient_goes_with_smtputf8_when_the_relay_offers_it(tmp_path, smtp_sink):
    db = tmp_path / "t.db"
    queued(db, "jürgen@müller.example", "<u1@msp.example>")
    assert drain(db, smtp_sink.port).sent == 1
    ((_from, rcpts, raw),) = smtp_sink.wait_for(1)
    assert rcpts == ["jürgen@müller.example"]
    assert "To: jürgen@müller.example\r\n".encode() in raw  # RFC 6532: UTF-8, never =?utf-8?
    assert rows(db)[0][1] == "sent"


def test_without_smtputf8_non_ascii_rows_fail_alone_and_the_rest_go_out(tmp_path, make_smtp_sink):
    """Twelve such rows stopped every round, and no acknowledgement or alert went out."""
    db = tmp_path / "t.db"
    for n in range(12):
        queued(db, f"jürgen{n}@müller.example", f"<bad{n}@msp.example>")
    queued(db, "jane@acme.example", "<good@msp.example>")
    queued(db, "ops@msp.example", "<alert@msp.example>", ticket=None)
    sink = make_smtp_sink(smtputf8=False)
    result = drain(db, sink.port)
    assert (result.sent, result.failed, result.deferred, result.relay_error) == (2, 12, 0, None)
    got = {rcpts[0] for _f, rcpts, _raw in sink.wait_for(2)}
    assert got == {"jane@acme.example", "ops@msp.example"}
    failed = [r for r in rows(db) if r[1] == "failed"]
    assert len(failed) == 12 and all("SMTPUTF8" in r[3] and "fix:" in r[3] for r in failed)
    assert drain(db, sink.port, now=NOW + timedelta(days=1)).sent == 0  # never retried


def test_operator_alerts_go_before_acknowledgements(tmp_path, smtp_sink):
    db = tmp_path / "t.db"
    pending(db, 5)
    queued(db, "ops@msp.example", "<alert@msp.example>", ticket=None)
    store = Store(db)
    try:
        sender = outbox.Sender(Smtp("127.0.0.1", smtp_sink.port, "none"), "support@msp.example")
        assert asyncio.run(outbox.drain(store, sender, now=lambda: NOW, limit=1)).sent == 1
    finally:
        store.close()
    ((_from, rcpts, _raw),) = smtp_sink.wait_for(1)
    assert rcpts == ["ops@msp.example"]


def test_date_is_when_the_message_is_sent_and_every_message_has_a_message_id(tmp_path, smtp_sink):
    db = tmp_path / "t.db"
    queued(db, "jane@acme.example", "<dated@msp.example>")
    queued(db, "ops@msp.example", "", ticket=None, date="")  # an alert queued by an older release
    later = NOW + timedelta(hours=3, minutes=7)
    assert drain(db, smtp_sink.port, now=later).sent == 2
    for _f, _t, raw in smtp_sink.wait_for(2):
        msg = email.message_from_bytes(raw, policy=policy.default)
        assert msg.get_all("Date") == ["Tue, 10 Mar 2026 17:37:00 +0000"]
        assert len(msg.get_all("Message-ID")) == 1 and msg["Message-ID"].endswith("@msp.example>")


def test_a_wrong_relay_password_keeps_every_row_pending_and_raises_relay_failing(
    tmp_path, make_smtp_sink
):
    """One wrong password marked every queued row failed in one round."""
    db = tmp_path / "t.db"
    pending(db, 5)
    sink = make_smtp_sink(tls=True, auth=("relay", "right-pw"))
    pw = tmp_path / "pw"
    pw.write_text("wrong-pw\n")
    login = {
        "tls": "starttls",
        "username": "relay",
        "secret": Secret("file", str(pw)),
        "ca_file": str(sink.ca_file),
    }
    log.get()  # configure structlog first, so capture_logs is not undone by the first log.get()
    with capture_logs() as logs:
        first = drain(db, sink.port, **login)
        second = drain(db, sink.port, now=NOW + timedelta(minutes=1), **login)
    assert "535" in first.relay_error and (first.sent, first.failed, first.deferred) == (0, 0, 0)
    assert second.relay_error and not second.reached
    assert {r[1:4] for r in rows(db)} == {("pending", 0, None)}
    events = [e["event"] for e in logs if e["event"].startswith("relay_")]
    assert events == ["relay_failing", "relay_still_failing"]
    failing = next(e for e in logs if e["event"] == "relay_failing")
    assert failing["kind"] == "auth" and "535" in failing["error"] and "wrong-pw" not in str(logs)
    store = Store(db)
    health = outbox.relay_health(store)
    store.close()
    assert health["failing"] and health["failures"] == 2 and "535" in health["last_error"]
    assert health["failing_since"] == "2026-03-10T14:30:00Z"
    pw.write_text("right-pw\n")
    with capture_logs() as logs:
        assert drain(db, sink.port, now=NOW + timedelta(minutes=2), **login).sent == 5
    assert [e["event"] for e in logs if e["event"].startswith("relay_")] == ["relay_recovered"]
    store = Store(db)
    health = outbox.relay_health(store)
    store.close()
    assert not health["failing"] and health["last_ok_at"] == "2026-03-10T14:32:00Z"


def test_a_row_that_only_ever_fails_for_now_is_given_up_after_five_days(tmp_path, make_smtp_sink):
    """A recipient answered 451 for ever would be retried every hour for ever."""
    db = tmp_path / "t.db"
    pending(db, 1)
    sink = make_smtp_sink(reply_code=451)
    assert drain(db, sink.port, now=NOW + timedelta(days=4)).deferred == 1
    assert rows(db)[0][1] == "pending"
    assert drain(db, sink.port, now=NOW + timedelta(days=5, hours=1)).failed == 1
    ((_, status, attempts, error, _),) = rows(db)
    assert (status, attempts) == ("failed", 2) and error.startswith("451")
    assert "gave up" in error and "fix:" in error


def test_once_told_to_stop_a_drainer_claims_no_further_row(tmp_path, smtp_sink, monkeypatch):
    db = tmp_path / "t.db"
    pending(db, 3)
    stop = asyncio.Event()
    opened = outbox.Sender.session

    def session_that_stops(self):
        session = opened(self)
        send = session.send

        async def send_then_stop(to, raw):
            await send(to, raw)
            stop.set()  # SIGTERM arrives while the first row is sent

        session.send = send_then_stop
        return session

    monkeypatch.setattr(outbox.Sender, "session", session_that_stops)
    store = Store(db)
    sender = outbox.Sender(Smtp("127.0.0.1", smtp_sink.port, "none"), "support@msp.example")
    try:
        result = asyncio.run(outbox.drain(store, sender, now=lambda: NOW, stop=stop))
    finally:
        store.close()
    assert result.sent == 1
    assert [r[1] for r in rows(db)] == ["sent", "pending", "pending"]


def test_a_relay_without_starttls_is_a_tls_failure_of_the_relay(tmp_path, smtp_sink):
    """tls = "starttls" against a relay that offers no STARTTLS: nothing is sent in clear."""
    db = tmp_path / "t.db"
    pending(db, 1)
    log.get()
    with capture_logs() as logs:
        result = drain(db, smtp_sink.port, tls="starttls")
    assert result.relay_error and "STARTTLS" in result.relay_error
    assert [e["kind"] for e in logs if e["event"] == "relay_failing"] == ["tls"]
    assert rows(db)[0][1:3] == ("pending", 0) and smtp_sink.messages() == []
