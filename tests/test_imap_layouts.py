"""`triage run` against IMAP servers that keep a user's folders under "INBOX.": Cyrus IMAP 3.6 in
Debian's default layout, and Dovecot with an INBOX.-prefixed namespace; and what the daemon does
when a session logs in but cannot file its mail."""

from __future__ import annotations

import asyncio
import imaplib
import time

import pytest

from tests.support import cyrus
from tests.support.daemon import Daemon, killed_after, wait_for
from triage.sources.imap import ImapSession

from . import servers
from .conftest import build, human
from .test_daemon import _password_mailbox

needs_dovecot = pytest.mark.skipif(
    servers.skip_reason() is not None, reason=servers.skip_reason() or ""
)
needs_cyrus = pytest.mark.skipif(cyrus.skip_reason() is not None, reason=cyrus.skip_reason() or "")

PROCESSED, FILTERED, ERRORS = (f"INBOX.Triage.{n}" for n in ("Processed", "Filtered", "Errors"))


def _start(kind: str, tmp_path):
    if kind == "cyrus":
        return cyrus.Cyrus.start(tmp_path / "cyrus")
    return servers.Dovecot.start(tmp_path / "dovecot", namespace_prefix="INBOX.")


@pytest.fixture(
    params=[
        pytest.param("cyrus", marks=needs_cyrus),
        pytest.param("dovecot-inbox-prefix", marks=needs_dovecot),
    ]
)
def prefixed(request, tmp_path):
    """A server whose NAMESPACE is (("INBOX." ".")): Cyrus, or Dovecot set up that way."""
    server = _start(request.param, tmp_path)
    yield server
    server.cleanup()


@pytest.fixture
def cyrus_server(tmp_path):
    if cyrus.skip_reason():
        pytest.skip(cyrus.skip_reason())
    server = cyrus.Cyrus.start(tmp_path / "cyrus")
    yield server
    server.cleanup()


@pytest.fixture
def dovecot(tmp_path):
    if servers.skip_reason():
        pytest.skip(servers.skip_reason())
    server = servers.Dovecot.start(tmp_path / "dovecot")
    yield server
    server.cleanup()


def bounce(n: int = 0) -> bytes:
    return build(
        {
            "From": "MAILER-DAEMON@mx.example",
            "To": "support@msp.example",
            "Subject": "Undelivered Mail Returned to Sender",
            "Message-ID": f"<bounce{n}@mx.example>",
        }
    )


def test_mail_is_filed_under_the_servers_inbox_prefix(prefixed, tmp_path):
    """Before: CREATE "Triage.Processed" was refused and ignored, UID MOVE failed, nothing moved."""
    for n in range(3):
        servers.append(
            prefixed, "support", "INBOX", human(Message_ID=f"<p{n}@x>", Subject=f"r {n}")
        )
    servers.append(prefixed, "support", "INBOX", bounce())
    with killed_after(lambda: Daemon(tmp_path, prefixed)) as make:
        d = make().start()
        wait_for(lambda: servers.count(prefixed, "support", "INBOX") == 0, 30, "INBOX to empty")
        assert d.stop() == 0
        assert servers.count(prefixed, "support", PROCESSED) == 3
        assert servers.count(prefixed, "support", FILTERED) == 1
        assert "Triage.Processed" not in servers.folders(prefixed, "support")
        assert d.scalar("SELECT COUNT(*) FROM tickets") == 3
        assert d.logged("mailbox_connection_failed") == []
        # the same mail delivered again after it was filed: found in its folder, not filed twice
        servers.append(prefixed, "support", "INBOX", human(Message_ID="<p0@x>", Subject="r 0"))
        d.start()
        wait_for(lambda: servers.count(prefixed, "support", "INBOX") == 0, 30, "the ghost")
        assert d.stop() == 0
        assert servers.count(prefixed, "support", PROCESSED) == 3
        assert d.scalar("SELECT COUNT(*) FROM tickets") == 3


def test_the_watched_folder_and_explicit_full_names_follow_the_namespace(prefixed, tmp_path):
    """`folder = "Support"` is INBOX.Support there; a name already under the prefix is kept."""
    servers.create(prefixed, "support", "INBOX.Support")
    servers.append(prefixed, "support", "INBOX.Support", human(Message_ID="<w@x>"))
    mailbox = {"folder": "Support", "processed_folder": "INBOX.Done"}
    with killed_after(lambda: Daemon(tmp_path, prefixed, mailbox=mailbox)) as make:
        d = make().start()
        wait_for(lambda: servers.count(prefixed, "support", "INBOX.Done") == 1, 30, "the move")
        assert d.stop() == 0
    assert servers.count(prefixed, "support", "INBOX.Support") == 0
    assert "INBOX.INBOX.Done" not in servers.folders(prefixed, "support")


@needs_cyrus
def test_on_cyrus_with_idled_new_mail_becomes_a_ticket_within_two_seconds(tmp_path):
    """Debian's cyrus.conf leaves idled off: IDLE then hears of new mail only at imapd's next
    poll (about a minute; docs/operations.md). With idled it is at once."""
    server = cyrus.Cyrus.start(tmp_path / "cyrus", idled=True)
    try:
        with killed_after(lambda: Daemon(tmp_path, server, mailbox={"poll_seconds": 600})) as make:
            d = make().start()
            wait_for(lambda: d.query("SELECT state FROM mailbox_state") == [("idle",)], 20, "idle")
            time.sleep(0.5)
            sent = time.monotonic()
            servers.append(server, "support", "INBOX", human(Message_ID="<idle@x>"))
            wait_for(lambda: d.scalar("SELECT COUNT(*) FROM tickets") == 1, 10, "the ticket")
            assert time.monotonic() - sent < 2.0
            assert d.stop() == 0
    finally:
        server.cleanup()


@pytest.mark.parametrize(
    ("kind", "name", "full"),
    [
        pytest.param("dovecot", "~Processed", "~Processed", marks=needs_dovecot),
        # another user's folder, named in full: kept as written, and Cyrus refuses it
        pytest.param("cyrus", "user.ops.Processed", "user.ops.Processed", marks=needs_cyrus),
    ],
)
def test_a_folder_the_server_will_not_create_is_a_configuration_problem(kind, name, full, tmp_path):
    """Fails loudly (kind config) naming the folder, its key and the fix; backs off; alerts."""
    server = (
        servers.Dovecot.start(tmp_path / "dovecot")
        if kind == "dovecot"
        else cyrus.Cyrus.start(tmp_path / "cyrus")
    )
    try:
        servers.append(server, "support", "INBOX", human(Message_ID="<c@x>"))
        options = {
            "mailbox": {"processed_folder": name},
            "daemon": {"operator": "ops@msp.example", "backoff_max_seconds": 8},
        }
        with killed_after(lambda: Daemon(tmp_path, server, **options)) as make:
            d = make().start()
            wait_for(lambda: len(d.logged("mailbox_reconnect_scheduled")) >= 3, 30, "3 retries")
            failing = d.logged("mailbox_failing")
            assert len(failing) == 1 and failing[0]["kind"] == "config"
            assert repr(full) in failing[0]["error"] and "processed_folder" in failing[0]["error"]
            assert "fix:" in failing[0]["error"]
            assert "FAILING" in d.cli("status", codes=(2,)).stdout
            waits = [e["seconds"] for e in d.logged("mailbox_reconnect_scheduled")]
            assert waits[2] >= 2.0  # 1, 2, 4 s (times 0.5-1 for jitter): the backoff grows
            assert d.stop() == 0
        # nothing was stored: the folder check comes before the first fetch
        assert d.scalar("SELECT COUNT(*) FROM messages") == 0
        assert servers.count(server, "support", "INBOX") == 1
        assert d.query("SELECT to_addr, subject FROM outbox") == [
            ("ops@msp.example", "triage: mailbox support is failing (config)")
        ]
    finally:
        server.cleanup()


def _refuse_inserts(cy: cyrus.Cyrus, folder: str) -> None:
    """Make `folder` exist but refuse new mail: the support user loses the insert right."""
    m = imaplib.IMAP4(cy.host, cy.port, timeout=10)
    try:
        m.login(cyrus.ADMIN, cy.users[cyrus.ADMIN])
        full = "user.support." + folder.removeprefix("INBOX.")
        for level in ("user.support.Triage", full):
            m.create(level)
        typ, data = m.setacl(full, "support", "lrswtekx")  # no i (insert), no p (post)
        assert typ == "OK", data
    finally:
        m.logout()


@needs_cyrus
def test_a_session_that_logs_in_but_cannot_file_counts_as_failing(cyrus_server, tmp_path):
    """Before: every login reset the failure count and the backoff: a reconnect about once a
    second, no mailbox_failing ever, and no message_triaged for the tickets it committed."""
    _refuse_inserts(cyrus_server, PROCESSED)
    servers.append(cyrus_server, "support", "INBOX", human(Message_ID="<m@x>"))
    options = {"daemon": {"operator": "ops@msp.example", "backoff_max_seconds": 8}}
    with killed_after(lambda: Daemon(tmp_path, cyrus_server, **options)) as make:
        d = make().start()
        wait_for(lambda: d.logged("mailbox_failing"), 30, "mailbox_failing")
        failing = d.logged("mailbox_failing")[0]
        assert failing["kind"] == "protocol" and failing["failures"] == 2  # alert_after_failures
        assert "UID MOVE" in failing["error"]
        wait_for(lambda: len(d.logged("mailbox_reconnect_scheduled")) >= 3, 30, "3 retries")
        assert [e["attempt"] for e in d.logged("mailbox_reconnect_scheduled")][:3] == [1, 2, 3]
        assert d.logged("mailbox_reconnect_scheduled")[2]["seconds"] >= 2.0
        # the ticket was committed before the move failed: its decision is logged, once per try
        triaged = d.logged("message_triaged")
        assert triaged and triaged[0]["action"] == "ticket"
        assert d.scalar("SELECT COUNT(*) FROM tickets") == 1
        assert "FAILING" in d.cli("status", codes=(2,)).stdout
        assert d.stop() == 0
    assert servers.count(cyrus_server, "support", "INBOX") == 1
    assert ("ops@msp.example", "triage: mailbox support is failing (protocol)") in d.query(
        "SELECT to_addr, subject FROM outbox"
    )


@needs_cyrus
def test_the_stall_clock_counts_from_the_last_filed_mail_not_the_last_login(cyrus_server, tmp_path):
    _refuse_inserts(cyrus_server, PROCESSED)
    servers.append(cyrus_server, "support", "INBOX", human(Message_ID="<s@x>"))
    options = {"daemon": {"alert_after_failures": 1000, "stalled_minutes": 0.05}}
    with killed_after(lambda: Daemon(tmp_path, cyrus_server, **options)) as make:
        d = make().start()
        wait_for(lambda: d.logged("mailbox_failing"), 30, "mailbox_failing")
        assert d.logged("mailbox_failing")[0]["kind"] == "stalled"
        assert len(d.logged("mailbox_connected")) >= 2  # logins went on, and did not reset it
        assert d.stop() == 0


@needs_dovecot
def test_logout_on_a_dead_connection_does_not_wait(dovecot, tmp_path):
    """Before: LOGOUT was sent on a connection the server had closed, and waited 5 s."""

    async def run() -> float:
        session = ImapSession(_password_mailbox(dovecot, tmp_path))
        await session.open()
        dovecot.stop()  # ends the imap session: the server closes the connection
        await asyncio.wait_for(session.lost.wait(), 5)
        started = time.monotonic()
        await session.close()
        return time.monotonic() - started

    assert asyncio.run(run()) < 0.5
