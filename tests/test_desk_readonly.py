"""The desk opens the database to read only: it never writes and never takes the write lock."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT
from triage.store.desk.readonly import connect


def test_a_write_is_refused_and_the_row_stays(tmp_path: Path):
    db = tmp_path / "triage.db"
    setup = sqlite3.connect(db)
    setup.execute("CREATE TABLE tickets (number TEXT)")
    setup.execute("INSERT INTO tickets VALUES ('T-000001')")
    setup.commit()
    conn = connect(db)
    with pytest.raises(sqlite3.OperationalError, match="readonly|read-only"):
        conn.execute("DELETE FROM tickets")
    conn.close()
    assert setup.execute("SELECT number FROM tickets").fetchall() == [("T-000001",)]


def test_a_missing_database_is_named_with_the_fix_and_not_created(tmp_path: Path):
    db = tmp_path / "nothere.db"
    with pytest.raises(FileNotFoundError) as err:
        connect(db)
    assert str(err.value).startswith(f"{db}: no database here; fix: ")
    assert not db.exists()


def _as_technician(db: Path) -> subprocess.CompletedProcess:
    """Count the tickets as uid 65534 in group GROUP only, through `connect`."""
    code = (
        "import sys; from triage.store.desk.readonly import connect\n"
        "try:\n"
        "    print(connect(sys.argv[1]).execute('SELECT COUNT(*) FROM tickets').fetchone()[0])\n"
        "except OSError as e:\n"
        "    print('ERROR', e)\n"
    )
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", f"--groups={GROUP}"]
        + [sys.executable, "-c", code, str(db)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


GROUP = 4242  # stands for the `triage` group


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to read as another user",
)
def test_a_technician_in_the_group_reads_what_the_daemon_wrote():
    """The modes docs/desk.md gives: folder 0750 and files 0640, group triage."""
    # Not under pytest's own folder: it is 0700, and the technician must reach the state.
    state = Path(tempfile.mkdtemp(prefix="triage-desk-state-"))
    try:
        _read_as_technician(state)
    finally:
        shutil.rmtree(state)


def _read_as_technician(state: Path) -> None:
    db = state / "triage.db"
    daemon = sqlite3.connect(db, isolation_level=None)  # stands for the running daemon
    daemon.execute("PRAGMA journal_mode=WAL")
    daemon.execute("PRAGMA wal_autocheckpoint=0")  # the new row stays in the -wal file
    daemon.execute("CREATE TABLE tickets (number TEXT)")
    daemon.execute("INSERT INTO tickets VALUES ('T-000001')")
    os.chown(state, 0, GROUP)
    state.chmod(0o750)
    for f in state.iterdir():
        os.chown(f, 0, GROUP)
        f.chmod(0o640)
    done = _as_technician(db)
    assert done.stdout.strip() == "1", done
    daemon.close()  # the daemon stopped: -wal and -shm are gone
    assert sorted(p.name for p in state.iterdir()) == ["triage.db"]
    done = _as_technician(db)
    assert done.stdout.startswith(f"ERROR {db}: this user can read the file but cannot open"), done
    assert "fix: start the daemon, or run this command as the daemon's user" in done.stdout
