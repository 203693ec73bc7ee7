"""XOAUTH2 against a real server: `triage run` with `oauth_command`, and ImapSession itself, against
a private Dovecot whose oauth2 passdb checks every token with a local introspection endpoint
(tests/support/dovecot.py: `Dovecot.start(..., oauth=True)`, `dc.tokens`)."""

from __future__ import annotations

import asyncio
import base64
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemon import Daemon, killed_after, wait_for
from triage.config.endpoints import Mailbox, Secret
from triage.sources.imap import ImapError, ImapSession

from . import servers
from .conftest import human

pytestmark = pytest.mark.skipif(
    servers.skip_reason() is not None, reason=servers.skip_reason() or ""
)


@pytest.fixture
def imap(tmp_path):
    server = servers.Dovecot.start(tmp_path / "dovecot", oauth=True)
    yield server
    server.cleanup()  # also stops its introspection endpoint


@pytest.fixture
def daemon(tmp_path, imap):
    def build(command: str, **options) -> Daemon:
        mailbox = {"password_file": None, "oauth_command": command, **options.pop("mailbox", {})}
        return Daemon(tmp_path, imap, mailbox=mailbox, **options)

    with killed_after(build) as make:
        yield make


def token_command(tmp_path: Path, token: str) -> str:
    """A script that prints the token kept in a file beside it, as a token helper does: the
    command line (which logs may name) never holds the token. Rewrite the file to rotate it."""
    store = tmp_path / "access-token"
    store.write_text(token + "\n")
    store.chmod(0o600)
    script = tmp_path / "token.sh"
    script.write_text(f'#!/bin/sh\nexec cat "{store}"\n')
    script.chmod(0o700)
    return str(script)


def _forms(token: str) -> list[str]:
    """The token as written and as XOAUTH2 carries it (base64)."""
    return [token, base64.b64encode(servers.xoauth2_payload("support", token)).decode()]


def test_xoauth2_login_over_tls_turns_mail_into_a_ticket(imap, daemon, tmp_path):
    token = imap.tokens.issue("support")
    servers.append(imap, "support", "INBOX", human(Message_ID="<oauth1@x>"))  # password login
    d = daemon(token_command(tmp_path, token)).start()
    wait_for(lambda: d.count("INBOX") == 0, 20, "INBOX to empty")
    wait_for(lambda: d.scalar("SELECT COUNT(*) FROM tickets") == 1, 10, "the ticket")
    assert d.stop() == 0
    assert d.query("SELECT subject, requester FROM tickets") == [
        ("Printer on floor 2 is jammed", "jane@acme.example")
    ]
    assert d.count("Triage/Processed") == 1
    assert d.logged("mailbox_connected") and not d.logged("mailbox_connection_failed")
    # the server really checked the token: an introspection request, a login by XOAUTH2
    assert imap.tokens.requests >= 1 and imap.tokens.refused == 0
    assert "user=<support>, method=XOAUTH2" in imap.log_text()
    assert not any(form in d.log.read_text() for form in _forms(token))


def _scrape(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode("utf-8")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_running_daemon_serves_its_ingest_latency_and_token_time_left(imap, daemon, tmp_path):
    token = imap.tokens.issue("support", lifetime=1800, jwt=True)
    for n in range(3):
        servers.append(imap, "support", "INBOX", human(Message_ID=f"<live{n}@x>"))
    port = servers.free_port()
    d = daemon(token_command(tmp_path, token), daemon={"metrics_listen": f"127.0.0.1:{port}"})
    d.start()
    wait_for(lambda: d.count("Triage/Processed") == 3, 20, "three messages filed")
    got = _scrape(f"http://127.0.0.1:{port}/metrics")
    # one observation per message filed, each within seconds of its INTERNALDATE
    assert got[("triage_ingest_latency_seconds_count", ())] == 3
    assert got[("triage_ingest_latency_seconds_bucket", (("le", "60.0"),))] == 3
    assert got[("triage_ingest_latency_skipped_total", ())] == 0
    left = got[("triage_oauth_token_seconds_left", (("mailbox", "support"),))]
    assert 1700 < left <= 1800
    assert d.stop() == 0


@pytest.mark.parametrize("how", ["expired", "revoked"])
def test_a_refused_token_fails_loudly_then_a_new_one_is_picked_up(imap, daemon, tmp_path, how):
    token = imap.tokens.issue("support")
    {"expired": imap.tokens.expire, "revoked": imap.tokens.revoke}[how](token)
    d = daemon(token_command(tmp_path, token)).start()
    wait_for(lambda: d.logged("mailbox_failing"), 20, "mailbox_failing")
    # the first attempt already hears the refusal (the server asks for an empty response first;
    # unanswered, the login hung until the timeout and was taken for a connection problem)
    failed = d.logged("mailbox_connection_failed")[0]
    assert failed["kind"] == "auth", failed
    assert "refused" in failed["error"] and "token" in failed["error"]
    assert "AUTHENTICATIONFAILED" in failed["error"]
    assert d.logged("mailbox_failing")[0]["kind"] == "auth"
    wait_for(lambda: d.scalar("SELECT failing FROM mailbox_state") == 1, 10, "failing = 1")
    wait_for(lambda: len(d.logged("mailbox_connection_failed")) >= 2, 20, "a retry")
    assert d.proc.poll() is None  # no crash, still trying
    assert imap.tokens.refused >= 2
    status = d.cli("status", codes=(2,))
    assert "FAILING" in status.stdout
    for text in (d.log.read_text(), status.stdout, status.stderr):
        assert not any(form in text for form in _forms(token))

    # the command runs at every login: a new token in its store ends the failing spell
    fresh = imap.tokens.issue("support")
    token_command(tmp_path, fresh)
    wait_for(lambda: d.logged("mailbox_connected"), 20, "the login with the new token")
    wait_for(lambda: d.scalar("SELECT failing FROM mailbox_state") == 0, 10, "failing = 0")
    servers.append(imap, "support", "INBOX", human(Message_ID=f"<after-{how}@x>"))
    wait_for(lambda: d.scalar("SELECT COUNT(*) FROM tickets") == 1, 20, "the ticket")
    assert d.stop() == 0
    assert not any(form in d.log.read_text() for form in _forms(token) + _forms(fresh))


def test_a_failing_token_command_is_a_secret_error_and_no_crash(imap, daemon, tmp_path):
    script = tmp_path / "token.sh"
    script.write_text("#!/bin/sh\necho 'refresh token expired: sign in again' >&2\nexit 3\n")
    script.chmod(0o700)
    d = daemon(str(script)).start()
    wait_for(lambda: d.logged("mailbox_failing"), 20, "mailbox_failing")
    failing = d.logged("mailbox_failing")[0]
    assert failing["kind"] == "secret", failing
    assert "cannot read the token" in failing["error"] and "exited 3" in failing["error"]
    assert str(script) in failing["error"]  # names the command...
    assert "sign in again" not in d.log.read_text()  # ...never quotes its output
    assert d.logged("mailbox_connection_failed")[0]["kind"] == "secret"
    wait_for(lambda: d.scalar("SELECT failing FROM mailbox_state") == 1, 10, "failing = 1")
    wait_for(lambda: len(d.logged("mailbox_connection_failed")) >= 2, 20, "a retry")
    assert d.proc.poll() is None
    assert "FAILING" in d.cli("status", codes=(2,)).stdout
    assert d.stop() == 0
    assert imap.tokens.requests == 0  # no login was tried without a token


# --------------------------------------------------------------------------- ImapSession itself


def _mailbox(imap: servers.Dovecot, command: str, timeout: float = 5) -> Mailbox:
    return Mailbox(
        name="support",
        host=imap.host,
        port=imap.tls_port,
        tls="tls",
        username="support",
        secret=Secret("command", command),
        oauth=True,
        ca_file=str(imap.ca_file),
        timeout=timeout,
    )


async def _open(mailbox: Mailbox) -> ImapSession:
    session = ImapSession(mailbox)
    try:
        await session.open()
    except BaseException:
        await session.close()
        raise
    return session


def test_after_xoauth2_the_logged_in_capabilities_are_known(imap, tmp_path):
    """MOVE and UIDPLUS come after login: ack() must not fall back to COPY and a plain EXPUNGE."""
    mailbox = _mailbox(imap, token_command(tmp_path, imap.tokens.issue("support")))

    async def run() -> set[str]:
        session = await _open(mailbox)
        try:
            return set(session.capabilities)
        finally:
            await session.close()

    capabilities = asyncio.run(run())
    assert {"MOVE", "UIDPLUS", "IDLE"} <= capabilities
    assert "AUTH=XOAUTH2" not in capabilities  # the list from after login, not before


def test_a_refused_token_is_an_auth_error_answered_at_once(imap, tmp_path):
    token = imap.tokens.issue("support")
    imap.tokens.revoke(token)
    mailbox = _mailbox(imap, token_command(tmp_path, token), timeout=20)
    started = time.monotonic()
    with pytest.raises(ImapError) as caught:
        asyncio.run(_open(mailbox))
    assert time.monotonic() - started < 5  # the server's NO, not the 20 s timeout
    assert caught.value.kind == "auth"
    assert "AUTHENTICATIONFAILED" in str(caught.value)
    assert token not in str(caught.value)
