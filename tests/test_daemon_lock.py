"""One `triage run` per database: a second refuses to start, naming the first; a crash frees it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support import procs
from tests.support.daemon import Daemon, killed_after, wait_for
from triage.store import lock as daemon_lock

from . import servers
from .conftest import FIXTURES, ROOT, human

HOLD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from triage.store import lock as daemon_lock
    held = daemon_lock.acquire(Path(sys.argv[1]))
    if len(sys.argv) > 2:  # a forked child that outlives us, as a pool worker might
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
    print("held", flush=True)
    time.sleep(60)
    """
)


def _holder(db: Path, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db), *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_a_second_holder_is_refused_with_the_pid_host_and_start_of_the_first(tmp_path):
    db = tmp_path / "triage.db"
    first = _holder(db)
    try:
        with pytest.raises(daemon_lock.AlreadyRunning) as refused:
            daemon_lock.acquire(db)
        text = str(refused.value)
        assert f"pid {first.pid}" in text and socket.gethostname() in text
        assert "since 20" in text and str(db) in text and "fix:" in text
    finally:
        first.kill()
        first.wait()
    daemon_lock.acquire(db).release()  # gone with its holder


def test_a_killed_holder_frees_the_lock_even_when_a_forked_child_lives_on(tmp_path):
    db = tmp_path / "triage.db"
    first = _holder(db, "fork")
    child = [pid for pid, _ in procs.descendants(first.pid)]
    assert len(child) == 1
    first.kill()
    first.wait()
    try:
        assert servers.proc_fields(child[0]) is not None  # still running
        daemon_lock.acquire(db).release()
    finally:
        os.kill(child[0], signal.SIGKILL)


def test_the_lock_file_is_the_owners_only_and_says_who_holds_it(tmp_path):
    db = tmp_path / "triage.db"
    held = daemon_lock.acquire(db)
    try:
        path = daemon_lock.lock_path(db)
        assert path == tmp_path / "triage.db.lock"
        assert path.stat().st_mode & 0o777 == 0o600
        info = json.loads(path.read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    finally:
        held.release()


# --------------------------------------------------------------------------- two daemons

needs_dovecot = pytest.mark.skipif(
    servers.skip_reason() is not None, reason=servers.skip_reason() or ""
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


@needs_dovecot
def test_a_second_daemon_on_one_database_refuses_to_start_and_the_first_goes_on(
    imap, daemon, tmp_path
):
    first = daemon().start()
    wait_for(lambda: first.logged("mailbox_connected"), 20, "the first daemon to log in")
    second_log = tmp_path / "second.log"
    second = servers.run_daemon(first.config, second_log)
    try:
        assert second.wait(timeout=20) == 1
    finally:
        if second.poll() is None:
            second.kill()
    said = second_log.read_text()
    assert "not starting" in said and f"pid {first.proc.pid}" in said
    assert socket.gethostname() in said and "fix:" in said
    servers.append(imap, "support", "INBOX", human(Message_ID="<after@x>"))
    wait_for(lambda: first.scalar("SELECT COUNT(*) FROM tickets") == 1, 20, "the first to go on")
    assert first.stop() == 0


@needs_dovecot
def test_after_a_kill_9_the_next_daemon_starts_at_once(imap, daemon):
    d = daemon().start()
    wait_for(lambda: d.logged("mailbox_connected"), 20, "the first daemon to log in")
    d.kill()
    d.start()
    wait_for(lambda: len(d.logged("mailbox_connected")) == 2, 20, "the second daemon to log in")
    assert d.stop() == 0


@needs_dovecot
def test_reading_commands_and_a_replay_into_another_database_run_beside_the_daemon(
    imap, daemon, tmp_path
):
    d = daemon().start()
    wait_for(lambda: d.logged("mailbox_connected"), 20, "the daemon to log in")
    assert "support" in d.cli("status").stdout
    d.cli("tickets")
    d.cli("outbox")
    other = tmp_path / "other.db"
    done = d.cli(
        "replay", "--db", str(other), "--json", str(FIXTURES / "01-plain-text-request.eml")
    )
    assert json.loads(done.stdout.splitlines()[0])["action"] == "ticket"
    time.sleep(0.2)
    assert d.proc.poll() is None
    assert d.stop() == 0


def test_the_same_database_through_a_symlink_is_the_same_lock(tmp_path):
    real, elsewhere = tmp_path / "real", tmp_path / "elsewhere"
    real.mkdir()
    elsewhere.mkdir()
    (real / "triage.db").touch()
    (elsewhere / "triage.db").symlink_to(real / "triage.db")
    first = _holder(real / "triage.db")
    try:
        with pytest.raises(daemon_lock.AlreadyRunning):
            daemon_lock.acquire(elsewhere / "triage.db")
    finally:
        first.kill()
        first.wait()
