"""`triage run` delivers what it queues: a ticket from a private Dovecot reaches a webhook
receiver, signed, within a second of its commit; a failing mailbox reaches it as
mailbox.failing; a webhook outage only delays deliveries."""

from __future__ import annotations

import pytest

from tests.support.daemon import Daemon, killed_after, wait_for
from tests.support.http_receiver import HttpReceiver, Reply
from triage import instants
from triage.sinks.webhook import new_secret

from . import servers
from .conftest import human

pytestmark = pytest.mark.skipif(
    servers.skip_reason() is not None, reason=servers.skip_reason() or ""
)
SECRET = new_secret(b"d" * 32)


@pytest.fixture
def imap(tmp_path):
    server = servers.Dovecot.start(tmp_path / "dovecot")
    yield server
    server.stop()


@pytest.fixture
def daemon(tmp_path, imap):
    with killed_after(lambda **options: Daemon(tmp_path, imap, **options)) as make:
        yield make


def sink_table(tmp_path, url: str, events: str) -> str:
    secret = tmp_path / "hook.secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    return (
        f'[[sink]]\nname = "hook"\nkind = "webhook"\nurl = "{url}"\n'
        f'secret_file = "{secret}"\nallow_insecure = true\nevents = {events}\n'
    )


def test_the_daemon_delivers_a_new_ticket_within_a_second_of_its_commit(tmp_path, imap, daemon):
    with HttpReceiver.start(secret=SECRET) as rx:
        rx.then(Reply.status(503, "deploying", retry_after="1"))  # an outage first
        d = daemon(extra=sink_table(tmp_path, rx.url, '["ticket.created"]')).start()
        wait_for(lambda: d.query("SELECT state FROM mailbox_state") == [("idle",)], 20, "idle")
        servers.append(imap, "support", "INBOX", human(Message_ID="<hook1@x>"))
        servers.append(imap, "support", "INBOX", human(Message_ID="<hook2@x>", Subject="VPN"))
        wait_for(lambda: len({r.headers["webhook-id"] for r in rx.requests}) == 2, 15, "two")
        wait_for(lambda: d.scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'sent'") == 2)
        assert d.stop() == 0
        assert all(r.verified for r in rx.requests)
        tickets = sorted(r.json()["data"]["ticket"] for r in rx.requests[1:])
        assert tickets == ["T-000001", "T-000002"]
        # the one that was not refused arrived within a second of its ticket's commit
        created = dict(d.query("SELECT number, created_at FROM tickets"))
        first = {r.json()["data"]["ticket"]: r.at for r in rx.requests}
        lags = [first[t] - instants.stored(created[t]).timestamp() for t in created]
        assert min(lags) < 1.0


def test_a_failing_mailbox_is_delivered_as_mailbox_failing(tmp_path, imap, daemon):
    with HttpReceiver.start(secret=SECRET) as rx:
        d = daemon(
            password="wrong", extra=sink_table(tmp_path, rx.url, '["mailbox.failing"]')
        ).start()
        wait_for(lambda: rx.requests, 20, "the mailbox.failing delivery")
        assert d.stop() == 0
        [req] = rx.requests
        body = req.json()
        assert body["type"] == "mailbox.failing"
        assert body["data"]["mailbox"] == "support" and body["data"]["kind"] == "auth"
