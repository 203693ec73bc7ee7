"""Sending through Graph's sendMail, against the Graph stand-in: the bytes, and whose fault.

What is asserted is what triage hands to Graph (the stand-in keeps the MIME it was given).
What Exchange then does with those headers is Microsoft's, and is described in docs/graph.md.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from tests.support.graph_drain import CLIENT_ID, UPN, credentials, standard
from tests.support.graph_standin import GraphStandIn
from triage.sinks.graph_mail import GraphSender, GraphSending, addressed
from triage.sinks.smtp import RelayError, RowError, stamped
from triage.sources.graph_http import Retries

ACK = (
    b"From: Support <support@contoso.example>\r\n"
    b"To: Customer <customer@example.org>\r\n"
    b"Subject: [T-000042] Printer is down\r\n"
    b"Date: Tue, 10 Mar 2026 14:30:00 +0000\r\n"
    b"Message-ID: <t-000042.ack@contoso.example>\r\n"
    b"In-Reply-To: <printer-1@example.org>\r\n"
    b"References: <printer-1@example.org>\r\n"
    b"Auto-Submitted: auto-replied\r\n"
    b"X-Auto-Response-Suppress: All\r\n"
    b"Precedence: auto_reply\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: text/plain; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"We have your request; ticket T-000042.\r\n"
)


@pytest.fixture
def graph(tmp_path):
    with GraphStandIn.start(tmp_path) as g:
        standard(g)
        yield g


def _sender(g: GraphStandIn, **kw) -> GraphSender:
    sending = GraphSending(
        kw.pop("user", UPN),
        kw.pop("credentials", None) or credentials(g),
        graph_url=g.url + "/v1.0",
        retries=kw.pop("retries", Retries(attempts=4, budget=30.0, backoff=0.05)),
    )
    return GraphSender(sending, "support@contoso.example")


async def _send(sender: GraphSender, to: str, raw: bytes) -> bool:
    session = sender.session()
    try:
        await session.send(to, raw)
        return session.reached
    finally:
        await session.close()


def test_the_acknowledgement_goes_as_mime_with_our_headers_and_message_id(graph):
    sender = _sender(graph)
    raw = stamped(ACK, datetime(2026, 3, 10, 15, 0, tzinfo=UTC), sender.domain)
    assert asyncio.run(_send(sender, "customer@example.org", raw)) is True
    [sent] = graph.sent(UPN)
    assert sent == raw  # every header as written: Message-ID, RFC 3834 marks, threading
    for header in (
        b"Message-ID: <t-000042.ack@contoso.example>",
        b"Auto-Submitted: auto-replied",
        b"X-Auto-Response-Suppress: All",
        b"Precedence: auto_reply",
        b"In-Reply-To: <printer-1@example.org>",
    ):
        assert header in sent
    saved = graph.message_ids(UPN, "sentitems")
    assert saved == ["<t-000042.ack@contoso.example>"]


def test_a_recipient_not_in_the_headers_is_added_as_bcc():
    assert addressed(ACK, "Customer@Example.org") == ACK  # named in To already (any case)
    assert addressed(ACK, "ops@contoso.example").startswith(b"Bcc: ops@contoso.example\r\nFrom:")


def test_a_refused_recipient_fails_the_row_alone(graph):
    bad = ACK.replace(b"To: Customer <customer@example.org>", b"To: customer-at-example.org")
    with pytest.raises(RowError) as caught:
        asyncio.run(_send(_sender(graph), "customer-at-example.org", bad))
    assert caught.value.permanent and "ErrorInvalidRecipients" in caught.value.said
    assert graph.sent(UPN) == []


def test_an_expired_secret_is_the_relays_failure_with_microsofts_reason(graph):
    graph.add_app(CLIENT_ID, secret_expired=True)
    with pytest.raises(RelayError) as caught:
        asyncio.run(_send(_sender(graph), "customer@example.org", ACK))
    assert caught.value.kind == "auth" and "AADSTS7000222" in caught.value.said


def test_an_app_without_mail_send_is_the_relays_failure(graph):
    graph.add_app(CLIENT_ID, roles=["Mail.ReadWrite"])
    with pytest.raises(RelayError) as caught:
        asyncio.run(_send(_sender(graph), "customer@example.org", ACK))
    assert caught.value.kind == "auth" and "Mail.Send" in caught.value.said


def test_sending_as_another_address_is_the_relays_failure(graph):
    other = ACK.replace(b"From: Support <support@contoso.example>", b"From: <help@contoso.example>")
    with pytest.raises(RelayError) as caught:
        asyncio.run(_send(_sender(graph), "customer@example.org", other))
    assert caught.value.kind == "refused" and "ErrorSendAsDenied" in caught.value.said
    assert "fix:" in caught.value.said


def test_an_unknown_mailbox_is_the_relays_failure(graph):
    with pytest.raises(RelayError) as caught:
        asyncio.run(
            _send(_sender(graph, user="nobody@contoso.example"), "customer@example.org", ACK)
        )
    assert "ErrorInvalidUser" in caught.value.said


def test_throttling_is_waited_out_then_sent_once(graph):
    graph.fault("429", count=2, match="/sendMail", retry_after=0.5)
    asyncio.run(_send(_sender(graph), "customer@example.org", ACK))
    assert graph.sent(UPN) == [ACK]


def test_a_connection_lost_while_sending_is_not_sent_again_blindly(graph):
    graph.fault("drop", count=1, match="/sendMail")
    with pytest.raises(RowError) as caught:
        asyncio.run(_send(_sender(graph), "customer@example.org", ACK))
    assert not caught.value.permanent and "connection lost" in caught.value.said
    stats = graph.stats()
    assert stats["hit sendMail"] == 1  # one attempt: the row waits for the next round
    assert stats.get("sent", 0) == 0


def test_too_large_for_sendmail_fails_the_row_without_asking(graph):
    huge = ACK + b"x" * (5 * 1024 * 1024)
    with pytest.raises(RowError) as caught:
        asyncio.run(_send(_sender(graph), "customer@example.org", huge))
    assert caught.value.permanent
    assert graph.stats().get("requests", 0) == 0
