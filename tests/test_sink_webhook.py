"""Signed webhooks against a real HTTP receiver on 127.0.0.1: the bytes and headers sent, the
signature as the Standard Webhooks reference verifier sees it, and how each answer is taken."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.servers import free_port, make_cert
from tests.support.http_receiver import HttpReceiver, Reply
from triage.sinks.base import Delivery, Status
from triage.sinks.config import parse_sink
from triage.sinks.events import TICKET_CREATED, Event
from triage.sinks.webhook import WebhookSink, new_secret, parse_secrets

AT = datetime(2026, 3, 10, 4, 26, tzinfo=UTC)
EVENT = Event.for_ticket(
    TICKET_CREATED,
    "evt_7f3a",
    AT,
    ticket="T-000123",
    subject="Server down",
    priority="P1",
    due=datetime(2026, 3, 10, 5, 26, tzinfo=UTC),
    requester="ceo@acme.example",
    vip=True,
    reasons=["priority: 'down' in the subject → P1"],
)


def secret() -> str:
    return new_secret(secrets.token_bytes(32))


def sink_for(tmp_path: Path, url: str, secret_text: str, **extra) -> WebhookSink:
    (tmp_path / "hook.secret").write_text(secret_text + "\n")
    table = {
        "name": "hook",
        "kind": "webhook",
        "url": url,
        "secret_file": "hook.secret",
        "events": ["ticket.created"],
        "allow_insecure": True,
        **extra,
    }
    return WebhookSink(parse_sink(tmp_path / "triage.toml", "sink[0]", table))


async def deliver(sink: WebhookSink, *deliveries: Delivery):
    try:
        return [await sink.deliver(d) for d in deliveries]
    finally:
        await sink.aclose()


def test_the_post_carries_the_event_body_signed_as_the_reference_verifier_expects(tmp_path):
    key = secret()
    with HttpReceiver.start(secret=key) as rx:
        sink = sink_for(tmp_path, rx.url, key)
        delivery = Delivery.first(EVENT, "hook")
        before = int(time.time())
        [outcome] = asyncio.run(deliver(sink, delivery))
    assert outcome.status is Status.SENT and outcome.code == 200
    [got] = rx.requests
    assert got.method == "POST" and got.path == "/hook"
    assert got.body == EVENT.body()
    assert got.verified is True, got.verify_error
    assert got.headers["content-type"] == "application/json"
    assert got.headers["webhook-id"] == delivery.id
    assert before <= int(got.headers["webhook-timestamp"]) <= int(time.time())
    assert got.headers["user-agent"].startswith("triage")
    # the signature, computed here by hand from the specification's words
    raw = base64.b64decode(key.removeprefix("whsec_"))
    signed = f"{delivery.id}.{got.headers['webhook-timestamp']}.".encode() + got.body
    expected = "v1," + base64.b64encode(hmac.new(raw, signed, hashlib.sha256).digest()).decode()
    assert got.headers["webhook-signature"] == expected


def test_a_resend_carries_the_same_id_and_the_same_body(tmp_path):
    key = secret()
    with HttpReceiver.start(secret=key) as rx:
        rx.then(Reply.status(500, "busy"))
        sink = sink_for(tmp_path, rx.url, key)
        first = Delivery.first(EVENT, "hook")
        again = Delivery(first.id, "hook", EVENT, attempt=2)
        outcomes = asyncio.run(deliver(sink, first, again))
    assert [o.status for o in outcomes] == [Status.RETRY, Status.SENT]
    one, two = rx.requests
    assert one.headers["webhook-id"] == two.headers["webhook-id"] == first.id
    assert one.body == two.body
    assert one.verified and two.verified


def test_a_signature_made_with_another_secret_is_refused_by_the_receiver(tmp_path):
    with HttpReceiver.start(secret=secret()) as rx:
        sink = sink_for(tmp_path, rx.url, secret())
        [outcome] = asyncio.run(deliver(sink, Delivery.first(EVENT, "hook")))
    assert rx.requests[0].verified is False
    assert outcome.status is Status.FAILED and outcome.code == 401


def test_during_a_rotation_every_secret_signs_and_the_old_one_still_verifies(tmp_path):
    old, new = secret(), secret()
    with HttpReceiver.start(secret=old) as rx:
        sink = sink_for(tmp_path, rx.url, f"{new}\n{old}")
        [outcome] = asyncio.run(deliver(sink, Delivery.first(EVENT, "hook")))
    assert outcome.status is Status.SENT
    assert len(rx.requests[0].headers["webhook-signature"].split(" ")) == 2
    assert rx.requests[0].verified is True


@pytest.mark.parametrize(
    ("reply", "status", "code", "wait"),
    [
        (Reply.status(204), Status.SENT, 204, None),
        (Reply.status(429, "slow down", retry_after="7"), Status.RETRY, 429, 7.0),
        (
            Reply.status(503, retry_after="Tue, 10 Mar 2099 12:00:00 GMT"),
            Status.RETRY,
            503,
            86400.0,
        ),
        (Reply.status(500, "oops"), Status.RETRY, 500, None),
        (Reply.status(408), Status.RETRY, 408, None),
        (Reply.status(400, "bad payload"), Status.FAILED, 400, None),
        (Reply.status(410, "endpoint disabled"), Status.FAILED, 410, None),
        (Reply.status(302, headers={"Location": "https://elsewhere/"}), Status.FAILED, 302, None),
    ],
)
def test_each_answer_is_classified(tmp_path, reply, status, code, wait):
    key = secret()
    with HttpReceiver.start(secret=key) as rx:
        rx.then(reply)
        sink = sink_for(tmp_path, rx.url, key)
        [outcome] = asyncio.run(deliver(sink, Delivery.first(EVENT, "hook")))
    assert (outcome.status, outcome.code, outcome.retry_after) == (status, code, wait)
    assert len(rx.requests) == 1  # never followed a redirect, never retried by itself


def test_a_receiver_that_hangs_is_given_up_after_the_timeout(tmp_path):
    key = secret()
    with HttpReceiver.start(secret=key) as rx:
        rx.then(Reply.hang())
        sink = sink_for(tmp_path, rx.url, key, timeout=0.5)
        started = time.monotonic()
        [outcome] = asyncio.run(deliver(sink, Delivery.first(EVENT, "hook")))
        took = time.monotonic() - started
    assert outcome.status is Status.RETRY and "no answer" in outcome.said
    assert took < 2.0


def test_a_receiver_that_closes_before_answering_means_retry(tmp_path):
    key = secret()
    with HttpReceiver.start(secret=key) as rx:
        rx.then(Reply.close())
        sink = sink_for(tmp_path, rx.url, key)
        [outcome] = asyncio.run(deliver(sink, Delivery.first(EVENT, "hook")))
    assert outcome.status is Status.RETRY and outcome.code is None
    assert "RemoteProtocolError" in outcome.said


def test_nothing_listening_means_retry(tmp_path):
    port = free_port()
    with socket.socket() as probe:  # still free
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    sink = sink_for(tmp_path, f"http://127.0.0.1:{port}/hook", secret())
    [outcome] = asyncio.run(deliver(sink, Delivery.first(EVENT, "hook")))
    assert outcome.status is Status.RETRY and "ConnectError" in outcome.said


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "No such file"),
        ("hunter2-zq9", "starts with 'whsec_'"),
        ("whsec_" + base64.b64encode(b"short").decode(), "24 to 64"),
        ("whsec_***", "not base64"),
    ],
)
def test_a_secret_that_cannot_be_used_holds_the_row_and_sends_nothing(tmp_path, content, words):
    with HttpReceiver.start() as rx:
        sink = sink_for(tmp_path, rx.url, "x")
        if content is None:
            (tmp_path / "hook.secret").unlink()
        else:
            (tmp_path / "hook.secret").write_text(content)
        [outcome] = asyncio.run(deliver(sink, Delivery.first(EVENT, "hook")))
    assert rx.requests == []
    assert outcome.status is Status.RETRY and outcome.held
    assert words in outcome.said and "hook.secret" in outcome.said
    if content:
        assert content not in outcome.said and "zq9" not in outcome.said  # never the secret


def test_the_rate_limit_spaces_the_requests(tmp_path):
    key = secret()
    with HttpReceiver.start(secret=key) as rx:
        sink = sink_for(tmp_path, rx.url, key, rate_limit=5)

        async def burst():
            try:
                return await asyncio.gather(
                    *(sink.deliver(Delivery.first(EVENT, f"hook{n}")) for n in range(6))
                )
            finally:
                await sink.aclose()

        outcomes = asyncio.run(burst())
    assert all(o.ok for o in outcomes)
    arrivals = sorted(r.at for r in rx.requests)
    assert arrivals[-1] - arrivals[0] >= 5 / 5 - 0.05  # six starts at 5/s span a second


def test_parse_secrets_reads_one_per_line():
    a, b = secret(), secret()
    assert parse_secrets(f"{a}\n{b}\n") == (
        base64.b64decode(a[6:]),
        base64.b64decode(b[6:]),
    )


def test_an_https_receiver_with_a_private_ca_needs_ca_file(tmp_path):
    cert, key_file = make_cert(tmp_path / "tls", "receiver")
    key = secret()
    with HttpReceiver.start(secret=key, tls=(cert, key_file)) as rx:
        assert rx.url.startswith("https://")
        refused = sink_for(tmp_path, rx.url, key)
        trusted = sink_for(tmp_path, rx.url, key, ca_file=str(cert))
        [untrusted] = asyncio.run(deliver(refused, Delivery.first(EVENT, "hook")))
        [sent] = asyncio.run(deliver(trusted, Delivery.first(EVENT, "hook")))
    assert untrusted.status is Status.RETRY and "CERTIFICATE_VERIFY_FAILED" in untrusted.said
    assert sent.status is Status.SENT
    assert [r.verified for r in rx.requests] == [True]
