"""`triage run` against a real, private Dovecot: what lands where, and what survives faults."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.support.daemon import Daemon, killed_after, wait_for
from triage.config.endpoints import Mailbox, Secret
from triage.sources.imap import ImapError, ImapSession

from . import servers
from .conftest import FIXTURES, ROOT, build, human, rules_with_slow_rule

pytestmark = pytest.mark.skipif(
    servers.skip_reason() is not None, reason=servers.skip_reason() or ""
)
EXPECTED = [
    json.loads(x)
    for x in (FIXTURES / "expected.jsonl").read_text(encoding="utf-8").splitlines()
    if x.strip()
]


@pytest.fixture
def imap(tmp_path):
    server = servers.Dovecot.start(tmp_path / "dovecot")
    yield server
    server.stop()


@pytest.fixture
def daemon(tmp_path, imap):
    with killed_after(lambda **options: Daemon(tmp_path, imap, **options)) as make:
        yield make


def test_fixtures_become_tickets_and_land_in_the_right_folders(imap, daemon):
    files = sorted(FIXTURES.glob("*.eml"))
    for path in files:
        servers.append(imap, "support", "INBOX", path.read_bytes())
    d = daemon().start()
    wait_for(lambda: d.count("INBOX") == 0, 60, "INBOX to empty")
    assert d.stop() == 0
    want = {e["file"]: e for e in EXPECTED}
    processed = sum(want[p.name]["action"] in ("ticket", "append") for p in files)
    filtered = sum(want[p.name]["action"] == "filtered" for p in files)
    held = sum(want[p.name]["action"] == "review" for p in files)
    assert held == 2
    assert (
        d.count("Triage/Processed"),
        d.count("Triage/Filtered"),
        d.count("Triage/Review"),
        d.count("Triage/Errors"),
    ) == (processed, filtered, held, 0)
    assert d.scalar("SELECT COUNT(*) FROM tickets") == sum(
        want[p.name]["action"] == "ticket" for p in files
    )
    by_subject = dict(d.query("SELECT subject, priority FROM tickets"))
    assert by_subject["Severity1"] == "P1"
    # Each ticket's mail keeps the bytes the server gave (the daemon's own copy, for
    # `triage explain --message KEY`): every one, and each under the hash of its bytes.
    kept = dict(d.query("SELECT sha256, raw FROM message_bytes"))
    filed = {
        s for (s,) in d.query("SELECT sha256 FROM messages WHERE action IN ('ticket', 'append')")
    }
    assert filed and filed <= set(kept)
    assert all(hashlib.sha256(raw).hexdigest() == sha for sha, raw in kept.items())
    # BODY.PEEK[]: nothing was marked read by fetching
    assert all(b"\\Seen" not in flags for flags in _flags(imap, d.folder("Triage/Processed")))


def _flags(imap, folder: str) -> list[bytes]:
    with servers.session(imap, "support") as m:
        m.select(servers.quote(folder), readonly=True)
        typ, data = m.fetch("1:*", "(FLAGS)")
        return [x if isinstance(x, bytes) else x[0] for x in data if x]


def test_mail_arriving_during_idle_becomes_a_ticket_within_two_seconds(imap, daemon):
    d = daemon().start()
    wait_for(
        lambda: d.query("SELECT state FROM mailbox_state") == [("idle",)], 20, "the daemon to idle"
    )
    sent = time.monotonic()
    servers.append(imap, "support", "INBOX", human(Message_ID="<idle@x>"))
    wait_for(lambda: d.scalar("SELECT COUNT(*) FROM tickets") == 1, 5, "the ticket")
    assert time.monotonic() - sent < 2.0
    assert d.stop() == 0


def test_dovecot_restart_mid_idle_loses_nothing_and_doubles_nothing(imap, daemon):
    d = daemon().start()
    servers.append(imap, "support", "INBOX", human(Message_ID="<before@x>"))
    wait_for(lambda: d.scalar("SELECT COUNT(*) FROM tickets") == 1, 20, "the first ticket")
    wait_for(lambda: d.query("SELECT state FROM mailbox_state") == [("idle",)], 10, "idle")
    imap.restart()
    servers.append(imap, "support", "INBOX", human(Message_ID="<after@x>", Subject="second"))
    wait_for(lambda: d.scalar("SELECT COUNT(*) FROM tickets") == 2, 30, "the second ticket")
    assert d.count("INBOX") == 0 and d.count("Triage/Processed") == 2
    assert d.logged("mailbox_connection_failed") and len(d.logged("mailbox_connected")) >= 2
    assert d.stop() == 0


def test_a_message_stored_but_not_moved_is_moved_without_a_second_ticket(imap, daemon, tmp_path):
    """The state a SIGKILL between commit and move leaves: the row exists, the mail is still in INBOX."""
    raw = human(Message_ID="<crash@x>")
    servers.append(imap, "support", "INBOX", raw)
    d = daemon()
    (tmp_path / "m.eml").write_bytes(raw)
    d.cli("replay", str(tmp_path / "m.eml"))
    assert d.scalar("SELECT COUNT(*) FROM tickets") == 1
    d.start()
    wait_for(lambda: d.count("INBOX") == 0, 20, "INBOX to empty")
    assert d.stop() == 0
    assert d.scalar("SELECT COUNT(*) FROM tickets") == 1
    assert d.count("Triage/Processed") == 1


def test_mail_back_in_inbox_after_it_was_filed_is_not_filed_twice(imap, daemon):
    """A server that crashed after MOVE, or a stop between COPY and EXPUNGE, leaves a ghost."""
    ticket, robot = (
        human(Message_ID="<filed@x>"),
        build(
            {
                "From": "MAILER-DAEMON@mx.example",
                "To": "support@msp.example",
                "Subject": "Undelivered Mail Returned to Sender",
                "Message-ID": "<bounce-filed@x>",
            }
        ),
    )
    servers.append(imap, "support", "INBOX", ticket)
    servers.append(imap, "support", "INBOX", robot)
    d = daemon().start()
    wait_for(lambda: d.count("INBOX") == 0, 20, "INBOX to empty")
    assert d.stop() == 0
    # the ghosts, and one message that only its row knows of (never filed: it is moved)
    for raw in (ticket, robot):
        servers.append(imap, "support", "INBOX", raw)
    servers.append(imap, "support", "INBOX", human(Message_ID="<new@x>"))
    d.start()
    wait_for(lambda: d.count("INBOX") == 0, 20, "INBOX to empty again")
    assert d.stop() == 0
    assert (d.count("Triage/Processed"), d.count("Triage/Filtered")) == (2, 1)
    assert d.scalar("SELECT COUNT(*) FROM tickets") == 2
    assert [e["action"] for e in d.logged("message_triaged")][-3:] == [
        "duplicate",
        "duplicate",
        "ticket",
    ]


def test_sigkill_mid_run_then_restart_gives_each_message_exactly_once(imap, daemon):
    for n in range(120):
        servers.append(
            imap, "support", "INBOX", human(Message_ID=f"<k{n}@x>", Subject=f"request {n}")
        )
    d = daemon(mailbox={"batch": 10}).start()
    wait_for(lambda: d.scalar("SELECT COUNT(*) FROM tickets") >= 20, 30, "some tickets")
    d.kill()
    d.start()
    wait_for(lambda: len(d.logged("mailbox_connected")) >= 2, 30, "the second run")
    wait_for(lambda: d.count("INBOX") == 0, 60, "INBOX to empty")
    assert d.stop() == 0
    assert d.query("SELECT COUNT(*), COUNT(DISTINCT message_key) FROM tickets")[0] == (120, 120)
    assert d.count("Triage/Processed") == 120


def test_uidvalidity_change_rescans_without_duplicates(imap, daemon):
    d = daemon().start()
    servers.append(imap, "support", "INBOX", human(Message_ID="<u1@x>"))
    wait_for(lambda: d.count("INBOX") == 0, 20, "the first message")
    assert d.stop() == 0
    old, new = servers.reset_uidvalidity(imap, "support", "INBOX")
    assert old != new
    servers.append(imap, "support", "INBOX", human(Message_ID="<u1@x>"))  # delivered again
    servers.append(imap, "support", "INBOX", human(Message_ID="<u2@x>", Subject="new one"))
    d.start()
    wait_for(lambda: d.count("INBOX") == 0, 20, "the rescan")
    assert d.stop() == 0
    assert d.scalar("SELECT COUNT(*) FROM tickets") == 2
    assert d.logged("uidvalidity_changed")[0]["now"] == new


def test_wrong_password_fails_loudly_with_backoff_and_no_crash(imap, daemon):
    d = daemon(password="Hunter2-not-it", daemon={"operator": "ops@msp.example"}).start()
    wait_for(lambda: d.logged("mailbox_failing"), 20, "mailbox_failing")
    failing = d.logged("mailbox_failing")[0]
    assert (
        failing["kind"] == "auth"
        and "refused" in failing["error"]
        and "password" in failing["error"]
    )
    assert "Hunter2" not in d.log.read_text()  # the secret never reaches the log
    wait_for(lambda: len(d.logged("mailbox_connection_failed")) >= 2, 20, "a retry")
    assert d.proc.poll() is None
    status = d.cli("status", codes=(2,))
    assert "FAILING" in status.stdout
    assert d.stop() == 0
    # and a mail to the operator waits in the outbox, once per failing spell
    assert d.query("SELECT to_addr, subject FROM outbox") == [
        ("ops@msp.example", "triage: mailbox support is failing (auth)")
    ]


def test_untrusted_certificate_is_refused_with_a_clear_error(imap, daemon):
    d = daemon(mailbox={"ca_file": None}).start()
    wait_for(lambda: d.logged("mailbox_failing"), 20, "mailbox_failing")
    failing = d.logged("mailbox_failing")[0]
    assert failing["kind"] == "tls" and "certificate not trusted" in failing["error"]
    assert d.stop() == 0


def test_starttls_and_flag_mode(imap, daemon):
    servers.append(imap, "support", "INBOX", human(Message_ID="<f1@x>"))
    d = daemon(mailbox={"port": imap.port, "tls": "starttls", "after": "flag"}).start()
    wait_for(lambda: d.scalar("SELECT COUNT(*) FROM tickets") == 1, 20, "the ticket")
    wait_for(lambda: any(b"$Triaged" in f for f in _flags(imap, "INBOX")), 10, "the keyword")
    assert d.stop() == 0
    assert d.count("INBOX") == 1  # flag mode leaves the message in place
    d.start()  # and a restart does not process it again
    # a loaded machine can take over 2 s to start: stop it once it serves, not before
    wait_for(lambda: len(d.logged("mailbox_connected")) >= 2, 30, "the second run")
    time.sleep(2)
    assert d.stop() == 0
    assert d.scalar("SELECT COUNT(*) FROM messages") == 1


def test_delete_mode_removes_after_storing(imap, daemon):
    servers.append(imap, "support", "INBOX", human(Message_ID="<del@x>"))
    d = daemon(mailbox={"after": "delete"}).start()
    wait_for(lambda: d.count("INBOX") == 0, 20, "the deletion")
    assert d.stop() == 0
    assert d.scalar("SELECT COUNT(*) FROM tickets") == 1


def test_a_poison_message_goes_to_errors_and_the_rest_go_on(imap, daemon, tmp_path):
    rules = rules_with_slow_rule(tmp_path)
    servers.append(imap, "support", "INBOX", human(Message_ID="<ok1@x>", Subject="fine"))
    servers.append(imap, "support", "INBOX", human(Message_ID="<poison@x>", Subject="a" * 40 + "!"))
    servers.append(imap, "support", "INBOX", human(Message_ID="<ok2@x>", Subject="also fine"))
    d = daemon(daemon={"message_timeout": 1}, extra=f'[rules]\ndir = "{rules}"').start()
    wait_for(lambda: d.count("INBOX") == 0, 30, "INBOX to empty")
    assert d.stop() == 0
    assert d.count("Triage/Errors") == 1 and d.count("Triage/Processed") == 2
    assert d.query("SELECT reason FROM messages WHERE action = 'quarantined'") == [("timeout",)]
    out = d.cli("errors")
    assert "timeout" in out.stdout


def test_two_poison_messages_in_a_stream_of_batches_blame_only_themselves(imap, daemon, tmp_path):
    """Chunks of the same batch and the batch fetched ahead of it: only the stuck two fail."""
    rules = rules_with_slow_rule(tmp_path)
    poison = {7, 26}  # one in each of the first two batches of 20
    for n in range(45):
        subject = "a" * 40 + "!" if n in poison else f"request {n}"
        servers.append(imap, "support", "INBOX", human(Message_ID=f"<m{n}@x>", Subject=subject))
    d = daemon(
        mailbox={"batch": 20}, daemon={"message_timeout": 1}, extra=f'[rules]\ndir = "{rules}"'
    ).start()
    wait_for(lambda: d.count("INBOX") == 0, 60, "INBOX to empty")
    assert d.stop() == 0
    assert (d.count("Triage/Errors"), d.count("Triage/Processed")) == (2, 43)
    quarantined = d.query("SELECT source, reason FROM messages WHERE action = 'quarantined'")
    # UIDs count from 1 in the order of appending
    assert sorted((src.rsplit("/", 1)[1], why) for src, why in quarantined) == [
        ("27", "timeout"),
        ("8", "timeout"),
    ]
    assert d.scalar("SELECT COUNT(*) FROM tickets") == 43


def test_sighup_with_a_broken_rule_file_keeps_the_old_rules(imap, daemon, tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    d = daemon(extra=f'[rules]\ndir = "{rules}"').start()
    wait_for(lambda: d.query("SELECT state FROM mailbox_state") == [("idle",)], 20, "idle")
    (rules / "filters.toml").write_text("[[rule]\nbroken", encoding="utf-8")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: d.logged("reload_rejected"), 10, "reload_rejected")
    assert "filters.toml" in d.logged("reload_rejected")[0]["error"]
    servers.append(
        imap, "support", "INBOX", human(Message_ID="<h1@x>", From="noreply@vendor.example")
    )
    wait_for(lambda: d.count("INBOX") == 0, 10, "the message")
    assert d.query("SELECT action, reason FROM messages") == [("filtered", "sow-from-noreply")]
    assert d.stop() == 0


def test_status_shows_a_rejected_reload_with_its_reason_until_one_succeeds(imap, daemon, tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    good = (rules / "filters.toml").read_text(encoding="utf-8")
    d = daemon(extra=f'[rules]\ndir = "{rules}"').start()
    wait_for(lambda: d.query("SELECT state FROM mailbox_state") == [("idle",)], 20, "idle")
    (rules / "filters.toml").write_text("[[rule]\nbroken", encoding="utf-8")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: d.logged("reload_rejected"), 10, "reload_rejected")
    status = d.cli("status", "--json", codes=(1,))
    rejected = json.loads(status.stdout)["reload_rejected"]
    assert str(rules / "filters.toml") in rejected["error"]
    assert "reload rejected" in json.loads(status.stdout)["verdict"]["reasons"][0]
    (rules / "filters.toml").write_text(good, encoding="utf-8")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: d.logged("reloaded"), 10, "reloaded")
    assert json.loads(d.cli("status", "--json").stdout)["reload_rejected"] is None
    assert d.stop() == 0


def test_sigterm_mid_batch_exits_cleanly_and_nothing_is_lost(imap, daemon):
    for n in range(150):
        servers.append(
            imap, "support", "INBOX", human(Message_ID=f"<t{n}@x>", Subject=f"request {n}")
        )
    d = daemon(mailbox={"batch": 20}).start()
    wait_for(lambda: d.scalar("SELECT COUNT(*) FROM tickets") >= 1, 30, "the first ticket")
    started = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - started < 15
    stored = d.scalar("SELECT COUNT(*) FROM messages")
    assert (
        stored + d.count("INBOX") == 150
    )  # every message is stored or still waiting: none both, none neither
    d.start()
    # the first run may have stored every message before SIGTERM: wait for this run to start
    wait_for(lambda: len(d.logged("mailbox_connected")) >= 2, 30, "the second run")
    wait_for(lambda: d.count("INBOX") == 0, 60, "the rest")
    assert d.stop() == 0
    assert d.scalar("SELECT COUNT(*) FROM tickets") == 150


def test_polling_when_idle_is_not_used(imap, daemon):
    d = daemon(mailbox={"use_idle": False, "poll_seconds": 1}).start()
    wait_for(
        lambda: d.query("SELECT state FROM mailbox_state") == [("idle",)], 20, "the first wait"
    )
    servers.append(imap, "support", "INBOX", human(Message_ID="<poll@x>"))
    wait_for(lambda: d.scalar("SELECT COUNT(*) FROM tickets") == 1, 5, "the ticket by polling")
    assert d.stop() == 0


def test_systemd_hears_ready_status_and_stopping(imap, daemon, tmp_path):
    import socket

    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(20)
    d = daemon()
    env_before = os.environ.get("NOTIFY_SOCKET")
    try:
        # Daemon.start drops NOTIFY_SOCKET from the test's environment; give it ours explicitly.
        d.start(env={**os.environ, "NOTIFY_SOCKET": str(path)})
        got: list[str] = []
        while "READY=1" not in got:
            got.extend(sock.recv(4096).decode().split("\n"))
        assert any(x.startswith("STATUS=support: ") for x in got)
        assert d.stop() == 0
        sock.settimeout(5)
        while "STOPPING=1" not in got:
            got.extend(sock.recv(4096).decode().split("\n"))
    finally:
        sock.close()
        assert os.environ.get("NOTIFY_SOCKET") == env_before


def test_a_mailbox_holding_mail_while_nothing_is_ingested_is_failing(imap, daemon, tmp_path):
    rules = rules_with_slow_rule(tmp_path)
    servers.append(imap, "support", "INBOX", human(Message_ID="<stuck@x>", Subject="a" * 60 + "!"))
    d = daemon(
        daemon={"message_timeout": 120, "stalled_minutes": 0.05}, extra=f'[rules]\ndir = "{rules}"'
    ).start()
    wait_for(lambda: d.logged("mailbox_failing"), 30, "mailbox_failing")
    assert d.logged("mailbox_failing")[0]["kind"] == "stalled"
    d.kill()


def test_mail_already_read_by_another_client_is_still_processed(imap, daemon):
    servers.append(imap, "support", "INBOX", human(Message_ID="<seen@x>"), flags="\\Seen")
    d = daemon().start()
    wait_for(lambda: d.scalar("SELECT COUNT(*) FROM tickets") == 1, 20, "the ticket")
    assert d.stop() == 0


def test_a_batch_holds_at_most_its_byte_budget_and_leaves_the_rest(imap, tmp_path):
    """Memory stays bounded when large messages queue up: the rest waits for the next batch."""
    for n in range(5):
        body = f"{n} " + "x" * 300_000 + "\n"
        servers.append(imap, "support", "INBOX", human(Message_ID=f"<big{n}@x>", body=body))
    mailbox = _password_mailbox(imap, tmp_path)

    async def run():
        session = ImapSession(mailbox)
        try:
            await session.open()
            uids = await session.unprocessed(0)
            first = await session.fetch(uids, 25 * 2**20, budget=700_000)
            alone = await session.fetch(uids[2:], 25 * 2**20, budget=10)
            return uids, first, alone
        finally:
            await session.close()

    uids, (first, left), (alone, rest) = asyncio.run(run())
    assert [f.uid for f in first] == uids[:2] and left == uids[2:]
    assert [int(f.raw.split(b"\r\n\r\n", 1)[1][:1]) for f in first] == [0, 1]
    assert [f.uid for f in alone] == uids[2:3] and rest == uids[3:]  # one always fits


def test_a_changed_uidvalidity_while_looking_for_filed_mail_stops_the_session(imap, tmp_path):
    """already_filed() leaves the watched folder and selects it again: if the server renumbered
    it meanwhile, the UIDs in hand name other messages, so the session must not go on."""
    servers.append(imap, "support", "INBOX", human(Message_ID="<v@x>"))

    async def run():
        session = ImapSession(_password_mailbox(imap, tmp_path))
        try:
            await session.open()
            assert await session.already_filed("processed", ["<v@x>"]) == set()  # same folder
            session.selected_uidvalidity = (
                session.selected_uidvalidity or 0
            ) + 1  # as if renumbered
            with pytest.raises(ImapError, match="UIDVALIDITY changed"):
                await session.already_filed("processed", ["<v@x>"])
        finally:
            await session.close()

    asyncio.run(run())


def _password_mailbox(imap: servers.Dovecot, tmp_path: Path) -> Mailbox:
    password = tmp_path / "pw"
    password.write_text(imap.users["support"])
    return Mailbox(
        name="support",
        host=imap.host,
        port=imap.tls_port,
        tls="tls",
        username="support",
        secret=Secret("file", str(password)),
        ca_file=str(imap.ca_file),
    )
