"""The daemon's deliveries, end to end: each acknowledgement once, a failing relay said aloud
(log, `triage status`, systemd), operator alerts with Date and Message-ID, the all-clear."""

from __future__ import annotations

import email
import json
import os
import socket
import threading
from collections import Counter
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import pytest

from tests.support import tickets
from tests.support.daemon import Daemon, killed_after, wait_for

from . import servers
from .conftest import human

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)

pytestmark = pytest.mark.skipif(
    (servers.skip_reason() or servers.smtp_skip_reason()) is not None,
    reason=servers.skip_reason() or servers.smtp_skip_reason() or "",
)


@pytest.fixture
def imap(tmp_path):
    server = servers.Dovecot.start(tmp_path / "dovecot")
    yield server
    server.stop()


@pytest.fixture
def daemon(tmp_path, imap):
    with killed_after(lambda **options: Daemon(tmp_path, imap, **options)) as make:
        yield make


def smtp_table(port: int, password_file: Path | None = None, ca_file: Path | None = None) -> str:
    """[identity] and [smtp] for a daemon that sends through the sink on `port`."""
    text = (
        '[identity]\ndomains = ["msp.example"]\nsupport_address = "support@msp.example"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\ntimeout = 5\n'
    )
    if password_file is None:
        return text + 'tls = "none"\nallow_insecure = true\n'
    return (
        text + f'tls = "starttls"\nca_file = "{ca_file}"\nusername = "relay"\n'
        f'password_file = "{password_file}"\n'
    )


class Notifications:
    """A $NOTIFY_SOCKET that keeps every STATUS= line it is sent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.statuses: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.done.is_set():
            try:
                data = self.sock.recv(65536).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            self.statuses += [x[7:] for x in data.split("\n") if x.startswith("STATUS=")]

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.sock.close()


def test_a_wrong_relay_password_is_relay_failing_in_the_log_status_and_systemd_until_fixed(
    imap, daemon, tmp_path, make_smtp_sink
):
    sink = make_smtp_sink(tls=True, auth=("relay", "right-pw"))
    pw = tmp_path / "smtp-pw"
    pw.write_text("wrong-pw\n")
    d = daemon(
        daemon={"outbox_seconds": 1, "backoff_max_seconds": 1},
        extra=smtp_table(sink.port, pw, sink.ca_file),
    )
    notes = Notifications(tmp_path / "notify.sock")
    try:
        d.start(env={**os.environ, "NOTIFY_SOCKET": str(notes.path)})
        for n in range(3):
            servers.append(
                imap,
                "support",
                "INBOX",
                human(From=f"user{n}@acme.example", Message_ID=f"<r{n}@x>"),
            )
        wait_for(lambda: d.logged("relay_failing"), 30, "relay_failing")
        wait_for(lambda: d.scalar("SELECT COUNT(*) FROM outbox") == 3, 20, "three acknowledgements")
        failing = d.logged("relay_failing")[0]
        assert failing["kind"] == "auth" and "535" in failing["error"]
        wait_for(lambda: any("relay: FAILING" in s for s in notes.statuses), 10, "STATUS=")
        status = json.loads(d.cli("status", "--json", codes=(2,)).stdout)  # critical
        assert status["relay"]["failing"] and "535" in status["relay"]["last_error"]
        assert status["verdict"]["reasons"] == ["relay failing (auth)"]
        assert "relay: FAILING" in d.cli("status", codes=(2,)).stdout
        # rows are not failed by the relay's fault, and no one sends a row twice
        assert {r for r in d.query("SELECT status, attempts FROM outbox")} <= {
            ("pending", 0),
            ("sending", 0),
        }
        assert len(d.logged("relay_failing")) == 1  # once per failing spell
        pw.write_text("right-pw\n")
        wait_for(lambda: len(sink.messages()) == 3, 30, "the acknowledgements once it works")
        wait_for(lambda: d.logged("relay_recovered"), 10, "relay_recovered")
        wait_for(
            lambda: notes.statuses and "FAILING" not in notes.statuses[-1],
            10,
            "the all-clear in STATUS=",
        )
        assert not json.loads(d.cli("status", "--json").stdout)["relay"]["failing"]
        assert d.stop() == 0
    finally:
        notes.close()
    assert sorted(r[1][0] for r in sink.messages()) == [f"user{n}@acme.example" for n in range(3)]


def test_a_failing_mailbox_that_recovers_logs_it_and_mails_the_all_clear(
    imap, daemon, tmp_path, smtp_sink
):
    d = daemon(
        password="not-the-password",
        daemon={"operator": "ops@msp.example", "outbox_seconds": 1},
        extra=smtp_table(smtp_sink.port),
    ).start()
    wait_for(lambda: d.logged("mailbox_failing"), 20, "mailbox_failing")
    (tmp_path / "pw").write_text(imap.users["support"] + "\n")
    wait_for(lambda: d.logged("mailbox_recovered"), 20, "mailbox_recovered")
    recovered = d.logged("mailbox_recovered")[0]
    assert recovered["mailbox"] == "support" and recovered["failures"] >= 1
    alerts = smtp_sink.wait_for(2, timeout=20)
    assert d.stop() == 0
    subjects = []
    for _from, rcpts, raw in alerts:
        msg = email.message_from_bytes(raw, policy=policy.default)
        assert rcpts == ["ops@msp.example"] and msg["To"] == "ops@msp.example"
        assert msg["Date"] and msg["Message-ID"].endswith("@msp.example>")
        assert msg["Auto-Submitted"] == "auto-generated"
        subjects.append(msg["Subject"])
    assert subjects == [
        "triage: mailbox support is failing (auth)",
        "triage: mailbox support has recovered",
    ]
    ids = d.query("SELECT message_id FROM outbox WHERE ticket_id IS NULL ORDER BY id")
    assert len(ids) == 2 and all(i[0] and i[0].startswith("<") for i in ids)


def test_two_daemons_started_on_one_config_send_each_acknowledgement_once(
    imap, daemon, tmp_path, smtp_sink
):
    """The issue's scenario, small: both started, messages waiting, a real SMTP sink."""
    count = 40
    for n in range(count):
        servers.append(
            imap,
            "support",
            "INBOX",
            human(From=f"user{n}@acme.example", Message_ID=f"<two{n}@x>", Subject=f"request {n}"),
        )
    first = daemon(daemon={"outbox_seconds": 1}, extra=smtp_table(smtp_sink.port)).start()
    second = servers.run_daemon(first.config, tmp_path / "second.log")
    both = [first.proc, second]
    try:
        wait_for(lambda: len(smtp_sink.messages()) >= count, 60, "every acknowledgement")
        # whichever took the lock first runs; the other gave up at once
        wait_for(lambda: sum(p.poll() is not None for p in both) == 1, 20, "one to give up")
        (loser,) = [p for p in both if p.poll() is not None]
        (winner,) = [p for p in both if p.poll() is None]
        assert loser.returncode == 1
        said = (tmp_path / ("daemon.log" if loser is first.proc else "second.log")).read_text()
        assert f"in use by another `triage run` (pid {winner.pid}" in said
        winner.terminate()
        assert winner.wait(30) == 0
    finally:
        for p in both:
            if p.poll() is None:
                p.kill()
                p.wait()
    per_recipient = Counter(rcpts[0] for _f, rcpts, _raw in smtp_sink.messages())
    assert per_recipient == Counter({f"user{n}@acme.example": 1 for n in range(count)})


def test_a_backlog_longer_than_one_round_is_sent_without_waiting_between_rounds(
    imap, daemon, tmp_path, smtp_sink
):
    """A round sends at most 100 rows; the daemon waited `outbox_seconds` after each full one,
    so a backlog (after a relay outage, say) drained at 100 rows per wait."""
    from triage.core.replies import Ack
    from triage.store.sqlite import Store

    d = daemon(daemon={"outbox_seconds": 120}, extra=smtp_table(smtp_sink.port))
    store = Store(d.db)
    store.begin()
    tickets.make(store.conn, *range(1, 251))
    for n in range(250):
        raw = f"To: user{n}@acme.example\r\nMessage-ID: <b{n}@msp.example>\r\n\r\nok\r\n"
        store.queue_ack(
            n + 1, None, Ack(f"user{n}@acme.example", "s", f"<b{n}@x>", raw.encode()), NOW
        )
    store.commit()
    store.close()
    d.start()
    wait_for(lambda: len(smtp_sink.messages()) == 250, 30, "the whole backlog")
    assert d.stop() == 0
