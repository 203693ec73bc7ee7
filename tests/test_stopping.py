"""`triage run` and `triage replay` stop within a bound however they are signalled, and leave no
worker behind: the main process only, the whole process group (what a terminal's Ctrl-C and
`kill -TERM -PGID` do; systemd's control-group kill is the same to the workers), SIGINT, twice.

Each process under test runs in its own session (setsid), so a group signal reaches it and its
workers and nothing else."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.support import procs
from tests.support.daemon import Daemon, Database, killed_after, wait_for

from . import servers
from .conftest import ROOT, human, rules_with_slow_rule

needs_dovecot = pytest.mark.skipif(
    servers.skip_reason() is not None, reason=servers.skip_reason() or ""
)


@pytest.fixture
def imap(tmp_path):
    if servers.skip_reason():
        pytest.skip(servers.skip_reason())
    server = servers.Dovecot.start(tmp_path / "dovecot")
    yield server
    server.cleanup()


def start_in_own_session(d: Daemon) -> Daemon:
    d.own_session = True
    return d.start()


def workers_of(pid: int, timeout: float = 10) -> list[tuple[int, int]]:
    """The processes under pid once its worker pool is up."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = procs.descendants(pid)
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no worker processes under {pid}")


def signal_it(proc: subprocess.Popen, sig: int, whom: str) -> None:
    if whom == "group":
        os.killpg(proc.pid, sig)  # the process group of the session it leads
    else:
        proc.send_signal(sig)


def exit_within(proc: subprocess.Popen, bound: float) -> tuple[int, float]:
    started = time.monotonic()
    try:
        code = proc.wait(bound)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {bound:g} s after the signal") from None
    return code, time.monotonic() - started


def assert_none_left(workers: list[tuple[int, int]], config=None) -> None:
    """The workers seen are gone, and (given the daemon's config) no process of that daemon
    runs anywhere, orphans included: a worker is a fork with the daemon's command line."""
    wait_for(lambda: not any(procs.alive(*w) for w in workers), 5, "the workers to be gone")
    if config is not None:
        wait_for(lambda: not running_with(str(config)), 5, "no process of this daemon")


def running_with(argument: str) -> list[int]:
    return [
        int(pid)
        for pid in os.listdir("/proc")
        if pid.isdigit() and argument in procs.cmdline(int(pid))
    ]


@needs_dovecot
@pytest.mark.parametrize(
    ("sig", "whom"),
    [
        (signal.SIGTERM, "group"),  # before: the workers died and the daemon waited for ever
        (signal.SIGINT, "group"),
        (signal.SIGTERM, "main"),
        (signal.SIGINT, "main"),
    ],
    ids=["SIGTERM-group", "SIGINT-group", "SIGTERM-main", "SIGINT-main"],
)
def test_the_daemon_finishes_the_batch_in_hand_and_stops(imap, tmp_path, sig, whom):
    for n in range(150):
        servers.append(imap, "support", "INBOX", human(Message_ID=f"<g{n}@x>", Subject=f"r {n}"))
    with killed_after(lambda: Daemon(tmp_path, imap, mailbox={"batch": 20})) as make:
        d = start_in_own_session(make())
        workers = workers_of(d.proc.pid)
        wait_for(lambda: d.scalar("SELECT COUNT(*) FROM tickets") >= 1, 30, "the first ticket")
        signal_it(d.proc, sig, whom)
        code, took = exit_within(d.proc, 10)
        assert code == 0
        assert_none_left(workers, d.config)
        stored = d.scalar("SELECT COUNT(*) FROM messages")
        # the batch in hand was finished: what is stored is filed, the rest is still waiting
        assert (d.count("Triage/Processed"), d.count("INBOX")) == (stored, 150 - stored)
        # no worker died under a message: none is blamed for it
        assert d.scalar("SELECT COUNT(*) FROM messages WHERE action = 'quarantined'") == 0
        assert d.logged("daemon_stopped")


@needs_dovecot
def test_the_daemon_idle_and_signalled_as_a_group_stops_at_once(imap, tmp_path):
    with killed_after(lambda: Daemon(tmp_path, imap)) as make:
        d = start_in_own_session(make())
        workers = workers_of(d.proc.pid)
        wait_for(lambda: d.query("SELECT state FROM mailbox_state") == [("idle",)], 20, "idle")
        signal_it(d.proc, signal.SIGTERM, "group")
        code, took = exit_within(d.proc, 10)
        assert code == 0 and took < 3
        assert_none_left(workers)


@needs_dovecot
def test_a_second_signal_stops_at_once_even_with_a_stuck_message(imap, tmp_path):
    """The first signal waits for the message in hand (up to the grace); the second does not."""
    rules = rules_with_slow_rule(tmp_path)
    servers.append(imap, "support", "INBOX", human(Message_ID="<stuck@x>", Subject="a" * 60 + "!"))
    options = {"daemon": {"message_timeout": 120}, "extra": f'[rules]\ndir = "{rules}"'}
    with killed_after(lambda: Daemon(tmp_path, imap, **options)) as make:
        d = start_in_own_session(make())
        workers = workers_of(d.proc.pid)
        wait_for(lambda: d.query("SELECT backlog FROM mailbox_state") == [(1,)], 20, "the fetch")
        time.sleep(0.5)
        signal_it(d.proc, signal.SIGTERM, "group")
        time.sleep(0.5)
        signal_it(d.proc, signal.SIGTERM, "group")
        code, took = exit_within(d.proc, 5)
        assert code == 0
        assert_none_left(workers)
        # nothing was committed for it: the message waits for the next start
        assert d.scalar("SELECT COUNT(*) FROM messages") == 0
        assert d.count("INBOX") == 1
        assert d.logged("stop_hurried")


@needs_dovecot
def test_one_signal_with_a_stuck_message_stops_before_systemd_would_kill(imap, tmp_path):
    """The message in hand gets the stop grace (20 s), then is left for the next start: the
    daemon is gone before the unit's TimeoutStopSec=30 and its SIGKILL."""
    rules = rules_with_slow_rule(tmp_path)
    servers.append(imap, "support", "INBOX", human(Message_ID="<stuck@x>", Subject="a" * 60 + "!"))
    options = {"daemon": {"message_timeout": 120}, "extra": f'[rules]\ndir = "{rules}"'}
    with killed_after(lambda: Daemon(tmp_path, imap, **options)) as make:
        d = start_in_own_session(make())
        workers = workers_of(d.proc.pid)
        wait_for(lambda: d.query("SELECT backlog FROM mailbox_state") == [(1,)], 20, "the fetch")
        signal_it(d.proc, signal.SIGTERM, "main")
        code, took = exit_within(d.proc, 28)
        assert code == 0 and took >= 19  # it did wait for the message in hand
        assert_none_left(workers)
        assert d.count("INBOX") == 1 and d.scalar("SELECT COUNT(*) FROM messages") == 0
        assert d.logged("stop_cut_short")


@needs_dovecot
def test_a_reload_asked_for_while_stopping_leaves_no_worker_behind(imap, tmp_path):
    rules = rules_with_slow_rule(tmp_path)
    servers.append(imap, "support", "INBOX", human(Message_ID="<stuck@x>", Subject="a" * 60 + "!"))
    options = {"daemon": {"message_timeout": 120}, "extra": f'[rules]\ndir = "{rules}"'}
    with killed_after(lambda: Daemon(tmp_path, imap, **options)) as make:
        d = start_in_own_session(make())
        workers = workers_of(d.proc.pid)
        wait_for(lambda: d.query("SELECT backlog FROM mailbox_state") == [(1,)], 20, "the fetch")
        signal_it(d.proc, signal.SIGTERM, "main")
        time.sleep(0.5)
        signal_it(d.proc, signal.SIGHUP, "main")
        time.sleep(0.5)
        signal_it(d.proc, signal.SIGTERM, "main")
        code, took = exit_within(d.proc, 5)
        assert code == 0
        assert_none_left(workers, d.config)
        assert not d.logged("reloaded")


def _replay(tmp_path, n: int) -> tuple[subprocess.Popen, object]:
    mail = tmp_path / "mail"
    mail.mkdir()
    for i in range(n):
        (mail / f"{i:05}.eml").write_bytes(human(Message_ID=f"<p{i}@x>", Subject=f"req {i}"))
    err = (tmp_path / "replay.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "triage.cli", "replay", "--db", str(tmp_path / "t.db"), "--json"]
        + [str(mail)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=err,
        start_new_session=True,
    )
    return proc, err


def _read_to_end(stream, timeout: float) -> bytes:
    """What is left on `stream` until EOF, read by a thread so that the wait is bounded."""
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(stream.read()), daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        raise AssertionError(f"output still open {timeout:g} s after the signal")
    return out[0]


@pytest.mark.parametrize(
    ("sig", "whom"),
    [
        (signal.SIGTERM, "group"),
        (signal.SIGINT, "group"),  # Ctrl-C at a terminal
        (signal.SIGTERM, "main"),
    ],
    ids=["SIGTERM-group", "SIGINT-group", "SIGTERM-main"],
)
def test_replay_signalled_reports_every_message_it_committed_and_stops(tmp_path, sig, whom):
    """Before: killed mid-way, it had committed 256 messages and printed about 130 of them."""
    proc, err = _replay(tmp_path, 3000)
    try:
        first = proc.stdout.readline()
        assert first.startswith(b"{")
        workers = workers_of(proc.pid)
        signal_it(proc, sig, whom)
        rest = _read_to_end(proc.stdout, 10)  # the line read above left its buffer ahead
        code, took = exit_within(proc, 1)
    finally:
        if proc.poll() is None:
            proc.kill()  # its workers die with it
            proc.wait()
        err.close()
    assert code == 128 + sig  # the shell's convention for "stopped by this signal"
    assert_none_left(workers, tmp_path / "mail")  # the workers share replay's command line
    lines = [json.loads(x) for x in (first + rest).splitlines()]
    stored = Database(tmp_path / "t.db").scalar("SELECT COUNT(*) FROM messages")
    assert 0 < len(lines) == stored < 3000
    assert "interrupted" in (tmp_path / "replay.log").read_text()
