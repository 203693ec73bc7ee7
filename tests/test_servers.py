"""The real-server fixtures work: a private Dovecot over imaps, STARTTLS and plain IMAP, and an
aiosmtpd sink, plain and with STARTTLS + AUTH."""

from __future__ import annotations

import imaplib
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from tests.support import dovecot as dovecot_module
from tests.support import procs

from . import servers
from .conftest import ROOT, human
from .servers import (
    Dovecot,
    append,
    client_ssl_context,
    connect,
    count,
    fetch_all,
    flags,
    folders,
    reset_uidvalidity,
    uids,
    uidvalidity,
)


def msg(n: int) -> bytes:
    return human(Message_ID=f"<m{n}@acme.example>", Subject=f"Ticket {n}")


def listening(dc: Dovecot) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the instance's master listens on."""
    inodes = set()
    for fd in os.listdir(f"/proc/{dc.pid}/fd"):
        try:
            target = os.readlink(f"/proc/{dc.pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == "0A" and inode in inodes:  # LISTEN
                addr_hex, port_hex = local.split(":")
                if len(addr_hex) == 8:
                    addr = socket.inet_ntoa(bytes.fromhex(addr_hex)[::-1])
                else:
                    addr = "ipv6:" + addr_hex
                found.add((addr, int(port_hex, 16)))
    return found


# --------------------------------------------------------------------------- Dovecot


def test_imaps_login_with_the_generated_ca(dovecot):
    ctx = client_ssl_context(dovecot.ca_file)
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT  # Python 3.13's default; the cert passes it
    for name in ("127.0.0.1", "localhost"):  # both are in the certificate's SAN
        raw = socket.create_connection((dovecot.host, dovecot.tls_port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            assert tls.recv(100).startswith(b"* OK")
    m = imaplib.IMAP4_SSL(dovecot.host, dovecot.tls_port, ssl_context=ctx, timeout=10)
    assert m.login("support", "secret")[0] == "OK"
    m.logout()
    # a client that doesn't trust the generated cert refuses it
    untrusting = ssl.create_default_context()  # the system's CAs only
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL(dovecot.host, dovecot.tls_port, ssl_context=untrusting, timeout=10)


def test_plain_imap_login_authenticate_and_starttls(dovecot):
    m = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=10)
    assert "STARTTLS" in m.capabilities
    assert {"AUTH=PLAIN", "AUTH=LOGIN"} <= set(m.capabilities)
    assert m.login("support", "secret")[0] == "OK"  # plaintext LOGIN allowed (tests only)
    m.logout()

    m = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=10)
    assert m.authenticate("PLAIN", lambda _: b"\0support\0secret")[0] == "OK"
    m.logout()

    m = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=10)
    m.starttls(client_ssl_context(dovecot.ca_file))
    assert m.login("support", "secret")[0] == "OK"
    m.logout()

    m = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=10)
    started = time.monotonic()
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        m.login("support", "wrong")
    assert time.monotonic() - started < 1.5  # auth_failure_delay = 0: ~0.5 s, not 2 s
    m.logout()


def test_listens_only_on_its_two_ports_on_loopback(dovecot):
    assert listening(dovecot) == {("127.0.0.1", dovecot.port), ("127.0.0.1", dovecot.tls_port)}


def test_append_count_uids_fetch_flags_folders(dovecot):
    assert count(dovecot, "support", "INBOX") == 0
    assert count(dovecot, "support", "Nope") == 0
    assert uids(dovecot, "support", "Nope") == []
    raws = [msg(n) for n in range(3)]
    assert [append(dovecot, "support", "INBOX", r) for r in raws] == [1, 2, 3]
    assert count(dovecot, "support", "INBOX") == 3
    assert uids(dovecot, "support", "INBOX") == [1, 2, 3]
    assert fetch_all(dovecot, "support", "INBOX") == raws  # CRLF in, CRLF out
    # a missing folder is created; Maildir++ separates levels with "."
    assert append(dovecot, "support", "Triage.Done", msg(9), flags="\\Seen") == 1
    assert folders(dovecot, "support") == ["INBOX", "Triage", "Triage.Done"]
    assert "\\Seen" in flags(dovecot, "support", "Triage.Done")[1]
    assert "\\Seen" not in flags(dovecot, "support", "INBOX")[1]  # fetch_all only peeked


def test_idle_and_move_are_offered_and_work(dovecot):
    m = connect(dovecot)
    _, caps = m.capability()
    offered = set(caps[0].decode().upper().split())
    assert {"IDLE", "MOVE", "UIDPLUS"} <= offered
    m.select("INBOX")

    # IDLE: a message appended by another session is announced without polling
    m.send(b"I1 IDLE\r\n")
    assert m.readline().startswith(b"+")
    started = time.monotonic()
    append(dovecot, "support", "INBOX", msg(1))
    m.sock.settimeout(5)
    assert m.readline() == b"* 1 EXISTS\r\n"
    assert time.monotonic() - started < 2
    m.send(b"DONE\r\n")
    while not (line := m.readline()).startswith(b"I1 "):
        assert line.startswith(b"*")
    assert line.startswith(b"I1 OK")

    # MOVE
    assert m.create("Done")[0] == "OK"
    typ, data = m.uid("MOVE", "1", "Done")
    assert typ == "OK", data
    m.logout()
    assert count(dovecot, "support", "INBOX") == 0
    assert count(dovecot, "support", "Done") == 1


def test_restart_keeps_messages_ports_and_uidvalidity(dovecot):
    for n in range(3):
        append(dovecot, "support", "INBOX", msg(n))
    ports, validity = (dovecot.port, dovecot.tls_port), uidvalidity(dovecot, "support", "INBOX")
    session = connect(dovecot)
    session.select("INBOX")

    dovecot.restart()
    assert dovecot.is_running()
    assert (dovecot.port, dovecot.tls_port) == ports
    with pytest.raises(imaplib.IMAP4.abort, match="shutting down"):
        session.noop()  # the open session was ended, as a real shutdown does
    assert uids(dovecot, "support", "INBOX") == [1, 2, 3]
    assert uidvalidity(dovecot, "support", "INBOX") == validity
    assert connect(dovecot, tls=True).logout()[0] == "BYE"


def test_stop_and_kill(dovecot):
    append(dovecot, "support", "INBOX", msg(1))
    session = connect(dovecot)
    session.select("INBOX")
    dovecot.kill()  # crash: master and sessions get SIGKILL
    assert not dovecot.is_running()
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        session.noop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((dovecot.host, dovecot.port), timeout=5)

    dovecot.restart()
    assert count(dovecot, "support", "INBOX") == 1
    started = time.monotonic()
    dovecot.stop()
    assert time.monotonic() - started < 1.0
    assert not dovecot.is_running()
    assert not (dovecot.base_dir / "master.pid").exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((dovecot.host, dovecot.port), timeout=5)
    assert "starting up for imap" in dovecot.log_text()


def test_reset_uidvalidity(dovecot):
    for n in range(3):
        append(dovecot, "support", "INBOX", msg(n))
    append(dovecot, "support", "Archive", msg(7), flags="\\Seen \\Flagged")
    before = uidvalidity(dovecot, "support", "INBOX")
    session = connect(dovecot)
    session.select("INBOX")

    old, new = reset_uidvalidity(dovecot, "support", "INBOX")
    assert old == before and new != old
    assert uidvalidity(dovecot, "support", "INBOX") == new
    assert uids(dovecot, "support", "INBOX") == [1, 2, 3]  # messages and UIDs kept
    with pytest.raises(imaplib.IMAP4.abort, match="inconsistent"):
        session.noop()  # Dovecot drops a session that had the mailbox selected

    old, new = reset_uidvalidity(dovecot, "support", "Archive", renumber=True)
    assert new != old
    assert uids(dovecot, "support", "Archive") == [2]  # re-appended: a new UID
    assert fetch_all(dovecot, "support", "Archive") == [msg(7)]
    assert flags(dovecot, "support", "Archive")[2] >= {"\\Seen", "\\Flagged"}


def test_two_instances_side_by_side(make_dovecot):
    a = make_dovecot()
    b = make_dovecot(tls=False, users={"support": "other", "billing": "pw"})
    assert len({a.port, a.tls_port, b.port}) == 3
    assert b.tls_port is None and b.ca_file is None
    assert "STARTTLS" not in imaplib.IMAP4(b.host, b.port, timeout=10).capabilities
    append(a, "support", "INBOX", msg(1))
    append(b, "billing", "INBOX", msg(2))
    append(b, "billing", "INBOX", msg(3))
    assert count(a, "support", "INBOX") == 1
    assert count(b, "support", "INBOX") == 0
    assert count(b, "billing", "INBOX") == 2
    a.stop()
    assert b.is_running() and count(b, "billing", "INBOX") == 2


def _sasl(dc: Dovecot, mechanism: str, payload: bytes) -> str:
    """AUTHENTICATE over the plain port; answers an error challenge with an empty response."""
    m = imaplib.IMAP4(dc.host, dc.port, timeout=10)
    try:
        return m.authenticate(mechanism, lambda challenge: b"" if challenge else payload)[0]
    except imaplib.IMAP4.error as exc:
        return f"NO {exc}"
    finally:
        m.logout()


def test_oauth_instance_checks_tokens_by_introspection_and_keeps_passwords(make_dovecot):
    dc = make_dovecot(oauth=True, users={"support": "secret", "billing": "b-pw"})
    assert dc.tokens is not None and "+oauth2" in repr(dc)
    m = imaplib.IMAP4(dc.host, dc.port, timeout=10)
    assert {"AUTH=PLAIN", "AUTH=LOGIN", "AUTH=XOAUTH2", "AUTH=OAUTHBEARER"} <= set(m.capabilities)
    assert m.login("support", "secret")[0] == "OK"  # passwords still work
    m.logout()
    token = dc.tokens.issue("support")
    assert _sasl(dc, "XOAUTH2", servers.xoauth2_payload("support", token)) == "OK"
    assert _sasl(dc, "OAUTHBEARER", servers.oauthbearer_payload("support", token)) == "OK"
    with connect(dc, "support", tls=True):  # and over imaps
        pass
    started = time.monotonic()
    refused = {
        "another user's token": servers.xoauth2_payload("billing", token),
        "a password as a token": servers.xoauth2_payload("support", "secret"),
        "an unknown token": servers.xoauth2_payload("support", "at-never-issued"),
    }
    for what, payload in refused.items():
        assert _sasl(dc, "XOAUTH2", payload).startswith("NO"), what
    expiring, revoked = dc.tokens.issue("support"), dc.tokens.issue("support")
    dc.tokens.expire(expiring)
    dc.tokens.revoke(revoked)
    for dead in (expiring, revoked):
        assert "AUTHENTICATIONFAILED" in _sasl(
            dc, "XOAUTH2", servers.xoauth2_payload("support", dead)
        )
    assert time.monotonic() - started < 3  # answered at once: no growing auth penalty
    assert _sasl(dc, "XOAUTH2", servers.xoauth2_payload("support", token)) == "OK"
    # billing's attempt got active=true for support's token: Dovecot compared the username
    assert (dc.tokens.requests, dc.tokens.refused) == (8, 4)
    assert token not in dc.log_text() and token not in repr(dc.tokens)
    url = dc.tokens.url
    dc.cleanup()  # stops the introspection endpoint it started
    with pytest.raises(OSError):
        socket.create_connection((servers.HOST, int(url.split(":")[2].split("/")[0])), timeout=2)


def test_default_instance_offers_no_oauth(dovecot):
    assert dovecot.tokens is None
    assert "AUTH=XOAUTH2" not in imaplib.IMAP4(dovecot.host, dovecot.port, timeout=10).capabilities
    assert "oauth2" not in dovecot.config_path.read_text()


def test_instance_in_a_traversable_folder_lives_there(tmp_path):
    if servers.skip_reason():
        pytest.skip(servers.skip_reason())
    base = Path(tempfile.mkdtemp(prefix="triage-test-"))
    os.chmod(base, 0o755)
    try:
        with Dovecot.start(base) as dc:
            assert dc.root.parent == base
            append(dc, "support", "INBOX", msg(1))
            assert (dc.maildir_root / "support").is_dir()
        assert not dc.is_running()
    finally:
        shutil.rmtree(base)


def test_pytest_tmp_path_instance_is_private_and_linked(dovecot, tmp_path):
    link = tmp_path / dovecot.root.name
    assert link.is_symlink() and link.resolve() == dovecot.root
    assert dovecot.root.stat().st_mode & 0o777 == 0o755


def test_instances_do_not_outlive_their_process(tmp_path):
    if servers.skip_reason():
        pytest.skip(servers.skip_reason())
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from tests.servers import Dovecot
        dc = Dovecot.start({str(tmp_path)!r})
        print(dc.root, dc.pid, flush=True)
        if sys.argv[1] == "crash":
            dc.stop()
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )

    def run(mode: str) -> tuple[Path, int]:
        proc = subprocess.run(
            [sys.executable, "-c", script, mode], capture_output=True, text=True, timeout=60
        )
        root, pid = proc.stdout.split()
        return Path(root), int(pid)

    root, pid = run("exit")  # never stopped: at exit the master is stopped, the folder removed
    assert not root.exists()
    fields = procs.proc_fields(pid)
    assert fields is None or fields[0] == b"Z"

    root, _ = run("crash")  # SIGKILLed after stop(): the folder stays behind...
    assert root.is_dir()
    with Dovecot.start(tmp_path):  # ...until the next start sweeps it
        assert not root.exists()


def test_skip_reason_names_the_package(monkeypatch):
    monkeypatch.setattr(dovecot_module, "find_tool", lambda tool: None)
    reason = dovecot_module.skip_reason()
    assert reason and "dovecot-imapd" in reason


# --------------------------------------------------------------------------- SMTP sink

RAW = (
    b"From: Help Desk <support@msp.example>\r\n"
    b"To: jane@acme.example\r\n"
    b"Subject: Re: Printer\r\n"
    b"\r\n"
    b".a line that starts with a dot\r\n"
    b"caf\xc3\xa9\r\n"
)


def test_smtp_sink_stores_the_exact_bytes(smtp_sink):
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as client:
        refused = client.sendmail(
            "support@msp.example", ["jane@acme.example", "cc@acme.example"], RAW
        )
    assert refused == {}
    assert smtp_sink.messages() == [
        ("support@msp.example", ["jane@acme.example", "cc@acme.example"], RAW)
    ]
    assert smtp_sink.envelopes()[0]["tls"] is False


def test_smtp_sink_starttls_and_auth(make_smtp_sink):
    sink = make_smtp_sink(tls=True, auth=("triage", "s3cret"))
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as client:
        client.ehlo()
        assert "auth" not in client.esmtp_features  # AUTH only after STARTTLS
        with pytest.raises(smtplib.SMTPSenderRefused) as err:
            client.sendmail("support@msp.example", ["jane@acme.example"], RAW)
        assert err.value.smtp_code == 530
    with smtplib.SMTP("localhost", sink.port, timeout=10) as client:
        client.starttls(context=client_ssl_context(sink.ca_file))
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("triage", "wrong")
        client.login("triage", "s3cret")
        client.sendmail("support@msp.example", ["jane@acme.example"], RAW)
    assert sink.wait_for(1) == [("support@msp.example", ["jane@acme.example"], RAW)]
    env = sink.envelopes()[0]
    assert env["tls"] is True and env["authenticated"] is True


@pytest.mark.parametrize("code", [550, 451])
def test_smtp_sink_refuses_data_with_reply_code(make_smtp_sink, code):
    sink = make_smtp_sink(reply_code=code)
    with (
        smtplib.SMTP(sink.host, sink.port, timeout=10) as client,
        pytest.raises(smtplib.SMTPDataError) as err,
    ):
        client.sendmail("support@msp.example", ["jane@acme.example"], RAW)
    assert err.value.smtp_code == code
    assert sink.messages() == []
    assert len(sink.refused()) == 1


def test_smtp_sink_stop_kill_restart(smtp_sink):
    port = smtp_sink.port
    smtp_sink.kill()
    assert not smtp_sink.is_running()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((smtp_sink.host, port), timeout=5)
    smtp_sink.restart()
    assert smtp_sink.port == port
    with smtplib.SMTP(smtp_sink.host, port, timeout=10) as client:
        client.sendmail("a@msp.example", ["b@acme.example"], RAW)
    assert len(smtp_sink.messages()) == 1


# --------------------------------------------------------------------------- the daemon harness


def test_the_harness_database_reads_nothing_until_there_then_follows_a_replaced_file(tmp_path):
    import sqlite3

    from tests.support.daemon import Database

    path = tmp_path / "triage.db"
    db = Database(path)
    assert db.rows("SELECT 1") == [] and db.scalar("SELECT 1", default=None) is None
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
    assert db.scalar("SELECT COUNT(*) FROM tickets") == 0  # no schema yet: no rows, no error
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE tickets (n)")
        conn.execute("INSERT INTO tickets VALUES (1)")
    assert db.scalar("SELECT COUNT(*) FROM tickets") == 1
    path.unlink()
    for extra in tmp_path.glob("triage.db-*"):
        extra.unlink()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE tickets (n)")
    assert db.scalar("SELECT COUNT(*) FROM tickets") == 0  # the new file, not the old one
    db.rows("INSERT INTO tickets VALUES (2)")  # read-only: a look never writes
    assert db.scalar("SELECT COUNT(*) FROM tickets") == 0
    db.close()


def test_the_harness_writes_a_config_triage_check_accepts(tmp_path, dovecot):
    from tests.support.daemon import Daemon

    d = Daemon(tmp_path / "d", dovecot, daemon={"outbox_seconds": 1}, mailbox={"timeout": None})
    text = d.config.read_text()
    assert "timeout" not in text.split("[daemon]")[0] and "outbox_seconds = 1" in text
    assert d.cli("check").stdout.strip().endswith("ok")
