"""The daemon against an autoresponder that answers everything: no mail loop.

A real Dovecot holds the watched mailbox; an SMTP peer (aiosmtpd, in this
process) receives our acknowledgements and, for each one, drops an automatic
answer back into that mailbox, the way a customer's out-of-office, a naive
vacation script or another help desk would. After 30 s of the two running
against each other, every conversation got at most one acknowledgement.
"""

from __future__ import annotations

import email
import itertools
import time

import pytest
from aiosmtpd.controller import Controller

from tests.support.daemon import Daemon, wait_for

from . import servers
from .conftest import build

pytestmark = pytest.mark.skipif(
    servers.skip_reason() is not None, reason=servers.skip_reason() or ""
)
RUN_SECONDS = 30


class Peer:
    """Answers every message it receives, in one of three styles, into the watched mailbox."""

    def __init__(self, imap: servers.Dovecot) -> None:
        self.imap = imap
        self.received: list[email.message.Message] = []
        self.counter = itertools.count()

    async def handle_DATA(self, server, session, envelope) -> str:
        msg = email.message_from_bytes(envelope.content)
        self.received.append(msg)
        to = envelope.rcpt_tos[0]
        style = to.split("@")[0]  # the customer's name says how their robot answers
        headers = {
            "From": to,
            "To": "support@msp.example",
            "Date": "Tue, 10 Mar 2026 15:00:00 +0000",
            "Message-ID": f"<auto{next(self.counter)}@{to.split('@')[1]}>",
        }
        if style == "polite":  # RFC 3834: marks its answer
            headers |= {
                "Subject": f"Automatic reply: {msg['Subject']}",
                "Auto-Submitted": "auto-replied",
                "In-Reply-To": msg["Message-ID"],
            }
        elif style == "threaded":  # no marking at all, but it threads
            headers |= {"Subject": f"Re: {msg['Subject']}", "In-Reply-To": msg["Message-ID"]}
        else:  # no marking, no threading: only our ticket token survives in the subject
            headers |= {"Subject": f"Re: {msg['Subject']}"}
        servers.append(
            self.imap,
            "support",
            "INBOX",
            build(headers, "I am away. This is an automatic answer.\n"),
        )
        return "250 OK"


@pytest.fixture
def peer(imap_server):
    handler = Peer(imap_server)
    controller = Controller(handler, hostname="127.0.0.1", port=servers.free_port())
    controller.start()
    yield handler, controller.port
    controller.stop()


@pytest.fixture
def imap_server(tmp_path):
    server = servers.Dovecot.start(tmp_path / "dovecot")
    yield server
    server.stop()


def test_an_autoresponder_peer_gets_at_most_one_acknowledgement_per_conversation(
    tmp_path, imap_server, peer
):
    handler, port = peer
    styles = ("polite", "threaded", "blunt")
    for n, style in enumerate(styles):
        servers.append(
            imap_server,
            "support",
            "INBOX",
            build(
                {
                    "From": f"{style}@customer.example",
                    "To": "support@msp.example",
                    "Subject": f"Printer {n} jammed",
                    "Date": "Tue, 10 Mar 2026 14:00:00 +0000",
                    "Message-ID": f"<start{n}@customer.example>",
                },
                "Please help.\n",
            ),
        )
    d = Daemon(
        tmp_path,
        imap_server,
        daemon={"outbox_seconds": 1},
        extra=(
            '[identity]\ndomains = ["msp.example"]\nsupport_address = "support@msp.example"\n'
            f'[smtp]\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\nallow_insecure = true\n'
        ),
    ).start()
    try:
        wait_for(lambda: len(handler.received) >= 3, 30, "the three acknowledgements")
        time.sleep(RUN_SECONDS)
    finally:
        assert d.stop() == 0
    per_address: dict[str, int] = {}
    for msg in handler.received:
        per_address[msg["To"]] = per_address.get(msg["To"], 0) + 1
    assert per_address == {f"{s}@customer.example": 1 for s in styles}
    assert d.scalar("SELECT COUNT(*) FROM tickets") == 3
    actions = dict(
        d.query(
            "SELECT from_addr || ':' || action, COUNT(*) FROM messages WHERE message_key LIKE '<auto%' GROUP BY 1"
        )
    )
    assert actions == {
        "polite@customer.example:filtered": 1,
        "threaded@customer.example:append": 1,
        "blunt@customer.example:append": 1,
    }
