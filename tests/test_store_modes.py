"""Who can read what the store makes: its folder's mode decides, never the umask.

A folder open to its group (0750, the shipped unit's StateDirectoryMode=) gets a database,
-wal, -shm, attachment store and kept messages the group can read (0640 / 0750); any other
folder gets owner-only ones (tests/test_security.py). A technician in the group then reads
with `triage tickets --db` while the daemon writes.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT
from tests.support.daemon import Daemon, killed_after, wait_for
from triage.store.sqlite import Store

from . import servers
from .conftest import human

NOW = "2026-03-10T14:30:00Z"
GROUP = 4242  # stands for the `triage` group
BROKEN = b"From: a@b.example\r\nSubject: a\x00b\r\n\r\nx"  # quarantined: its bytes are kept


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _replay(db: Path, mail: Path, umask: int, *, user: list[str] | None = None):
    return subprocess.run(
        [*(user or []), sys.executable, "-m", "triage.cli", "replay", "--db", str(db)]
        + ["--now", NOW, str(mail)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        umask=umask,
        check=True,
    )


def _mail(tmp: Path) -> Path:
    mail = tmp / "mail"
    mail.mkdir()
    shutil.copy(FIXTURES / "04-attachments-pdf-png.eml", mail)
    shutil.copy(FIXTURES / "01-plain-text-request.eml", mail)
    (mail / "zz-broken.eml").write_bytes(BROKEN)
    return mail


def _assert_group_readable(db: Path) -> None:
    files = db.with_name(db.name + ".files")
    assert _mode(db) == 0o640
    assert _mode(files) & 0o777 == 0o750
    made = list(files.rglob("*"))
    assert any(p.suffix == ".eml" for p in made)  # the quarantined message's bytes
    assert sum(p.is_file() for p in made) >= 3  # and two attachments
    for p in made:
        assert _mode(p) & 0o777 == (0o750 if p.is_dir() else 0o640), p


@pytest.mark.parametrize("umask", [0o077, 0o022])
def test_a_folder_open_to_its_group_gets_group_readable_files_whatever_the_umask(
    tmp_path: Path, umask: int
):
    state = tmp_path / "state"
    state.mkdir(mode=0o750)
    state.chmod(0o750)
    db = state / "triage.db"
    _replay(db, _mail(tmp_path), umask)
    _assert_group_readable(db)
    store = Store(db)  # -wal and -shm exist while the database is open
    try:
        store.begin()
        store.conn.execute("INSERT INTO events (kind, at, detail) VALUES ('x', 'now', '{}')")
        store.commit()
        for suffix in ("-wal", "-shm"):
            assert _mode(db.with_name(db.name + suffix)) == 0o640, suffix
    finally:
        store.close()


def test_a_folder_closed_to_its_group_keeps_everything_owner_only(tmp_path: Path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    db = state / "triage.db"
    _replay(db, _mail(tmp_path), 0o022)  # the usual umask would give 0644: never here
    assert _mode(db) == 0o600
    for p in db.with_name(db.name + ".files").rglob("*"):
        assert _mode(p) == (0o700 if p.is_dir() else 0o600), p


@pytest.mark.skipif(servers.skip_reason() is not None, reason=servers.skip_reason() or "")
def test_the_daemon_under_the_units_umask_makes_them_group_readable(tmp_path: Path):
    dovecot = servers.Dovecot.start(tmp_path / "dovecot")
    try:
        home = tmp_path / "state"
        home.mkdir(mode=0o750)
        home.chmod(0o750)
        with killed_after(lambda: Daemon(home, dovecot)) as make:
            d = make()
            servers.append(
                dovecot, "support", "INBOX", (FIXTURES / "04-attachments-pdf-png.eml").read_bytes()
            )
            servers.append(dovecot, "support", "INBOX", human(Message_ID="<m2@x>"))
            d.start(umask=0o027)
            wait_for(lambda: d.scalar("SELECT COUNT(*) FROM messages") == 2, 30, "two messages")
            for suffix in ("-wal", "-shm"):
                assert _mode(d.db.with_name(d.db.name + suffix)) == 0o640, suffix
            assert d.stop() == 0
        assert _mode(d.db) == 0o640
        files = d.db.with_name(d.db.name + ".files")
        assert _mode(files) == 0o750
        saved = [p for p in files.rglob("*") if p.is_file()]
        assert len(saved) >= 2 and all(_mode(p) == 0o640 for p in saved)
    finally:
        dovecot.cleanup()


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to write and read as other users",
)
def test_a_technician_in_the_group_runs_triage_tickets_while_the_daemon_writes():
    # Not under pytest's own folder: it is 0700, and the technician must reach the state.
    top = Path(tempfile.mkdtemp(prefix="triage-modes-"))
    try:
        top.chmod(0o755)
        state = top / "state"  # as `adduser --system --group triage` and the unit make it
        state.mkdir()
        os.chown(state, 0, GROUP)
        state.chmod(0o2750)  # setgid: what is made inside is the group's, as a static user's
        db = state / "triage.db"
        _replay(db, _mail(top), 0o022)
        _assert_group_readable(db)
        writer = sqlite3.connect(db)  # stands for the running daemon: -wal and -shm exist
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("SELECT COUNT(*) FROM tickets").fetchone()
        assert [p for p in state.rglob("*") if p.stat().st_gid != GROUP] == []
        technician = ["setpriv", "--reuid=65534", "--regid=65534", f"--groups={GROUP}"]
        done = subprocess.run(
            [*technician, sys.executable, "-m", "triage.cli", "tickets", "--db", str(db)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        writer.close()
        assert done.returncode == 0, done.stderr
        assert "T-000001" in done.stdout and "T-000002" in done.stdout
        attachment = next(p for p in (state / "triage.db.files").rglob("*") if p.is_file())
        read = subprocess.run([*technician, "cat", str(attachment)], capture_output=True)
        assert read.returncode == 0 and read.stdout == attachment.read_bytes()
    finally:
        shutil.rmtree(top)
