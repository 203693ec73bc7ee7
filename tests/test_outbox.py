"""Acknowledgements over a real SMTP server (aiosmtpd): what is sent, retried, refused."""

from __future__ import annotations

import asyncio
import email
import sqlite3
from datetime import UTC, datetime, timedelta
from email import policy

import pytest
from click.testing import CliRunner

from triage import outbox
from triage.bounces import Returned
from triage.cli import cli
from triage.config import Config
from triage.endpoints import Secret, Smtp
from triage.pipeline import Action, Decision, Rules
from triage.replay import replay
from triage.sources.files import Item
from triage.store import Store

from . import servers
from .conftest import build, human

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)  # Tuesday


def queue(db, *messages: bytes, config: Config | None = None) -> list:
    """Replay `messages` into `db` with acknowledgements queued as pending, as the daemon does."""
    config = config or Config(
        db=db, support_address="support@msp.example", own_domains=frozenset({"msp.example"})
    )
    store = Store(db)
    outbox.ensure(store)
    store.outbox_status = "pending"
    out = []
    replay(
        [Item(f"m{n}", raw) for n, raw in enumerate(messages)],
        Rules.load(config),
        store,
        NOW,
        out.append,
    )
    store.close()
    return out


def rows(db) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT id, status, attempts, last_error, message_id FROM outbox ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def drain(db, sink_port: int, now: datetime = NOW, **smtp) -> outbox.Result:
    store = Store(db)
    outbox.ensure(store)
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
    assert (result.sent, result.deferred) == (0, 1)
    ((_, status, attempts, error, _),) = rows(db)
    assert (status, attempts) == ("pending", 1) and "Connect" in error or "refused" in error.lower()
    sink = make_smtp_sink(port=port)
    assert drain(db, port).sent == 0  # not due yet: backoff
    assert drain(db, port, now=NOW + timedelta(minutes=5)).sent == 1
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


def test_killed_after_the_server_accepted_but_before_marking_sends_again_with_the_same_id(
    tmp_path, smtp_sink, monkeypatch
):
    """Documented behaviour: at least once; the repeat carries the same Message-ID."""
    db = tmp_path / "t.db"
    queue(db, human())

    def crash(*_args):
        raise SystemExit("killed")

    monkeypatch.setattr(outbox, "mark_sent", crash)
    with pytest.raises(SystemExit):
        drain(db, smtp_sink.port)
    monkeypatch.undo()
    assert rows(db)[0][1] == "pending"
    assert drain(db, smtp_sink.port).sent == 1
    first, second = (email.message_from_bytes(m[2]) for m in smtp_sink.wait_for(2))
    assert first["Message-ID"] == second["Message-ID"]


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
    assert result.sent == 0 and "certificate" in rows(db)[0][3].lower()


def test_no_more_than_five_acknowledgements_a_day_per_address(tmp_path):
    db = tmp_path / "t.db"
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


def bounces(db) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT address, status FROM bounces ORDER BY id").fetchall()
    finally:
        conn.close()


def test_a_forged_bounce_silences_nobody_else(tmp_path):
    """Issue 12.5: a DSN carrying the Message-ID of the attacker's own acknowledgement but
    naming jane@acme.example counts for nobody: that acknowledgement went to the attacker."""
    db = tmp_path / "t.db"
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
def test_a_bounce_counts_for_the_address_the_acknowledgement_went_to(tmp_path, named):
    db = tmp_path / "t.db"
    queue(db, human(From="gone@acme.example", Message_ID="<g1@acme.example>"))
    ((_, _, _, _, ack_id),) = rows(db)
    (d,) = queue(db, dsn(ack_id, *named))
    assert d.bounce is not None and d.bounce.recipient == "gone@acme.example"
    assert bounces(db) == [("gone@acme.example", "5.1.1")]
    (again,) = queue(db, human(From="gone@acme.example", Message_ID="<g2@x>", Subject="more"))
    assert "bounced permanently" in again.reply_suppressed


def test_the_store_remembers_a_bounce_only_for_the_acknowledgements_recipient(tmp_path):
    """Checked where the row is written too, whoever builds the decision."""
    db = tmp_path / "t.db"
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
    store = Store(db)
    store.begin()
    store.record(forged, NOW)
    store.commit()
    store.close()
    assert bounces(db) == []
