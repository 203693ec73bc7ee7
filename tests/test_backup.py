"""`triage backup` while the database is written, and a restore that goes on working.

The copy is taken while `triage replay` and a second writer (standing for the daemon)
commit; it is restored into a new folder, the fixtures are replayed into it, and the ticket
count comes out as one replay of them all, the copy whole (`PRAGMA integrity_check`) with
every attachment its rows name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from tests.conftest import FIXTURES, ROOT
from triage.store import backup
from triage.store.sqlite import Store

NOW = "2026-03-10T14:30:00Z"


def triage(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "triage.cli", "--log-level", "warning", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def tickets_of(db: Path) -> int:
    return backup.check(db).tickets


def _split(tmp: Path) -> tuple[Path, Path]:
    first, second = tmp / "first", tmp / "second"
    first.mkdir()
    second.mkdir()
    for n, eml in enumerate(sorted(FIXTURES.glob("*.eml"))):
        shutil.copy(eml, first if n < 45 else second)
    return first, second


def test_a_backup_taken_while_writes_go_on_restores_and_replays(tmp_path: Path):
    whole = tmp_path / "whole" / "t.db"
    triage("replay", "--db", str(whole), "--now", NOW, str(FIXTURES))
    expected = tickets_of(whole)

    first, second = _split(tmp_path)
    db = tmp_path / "live" / "t.db"
    triage("replay", "--db", str(db), "--now", NOW, str(first))
    stop = threading.Event()
    writes = []

    def daemon_like() -> None:  # commits as fast as it can while the copy is taken
        store = Store(db, busy_timeout=15)
        try:
            while not stop.is_set():
                store.begin()
                store.conn.execute(
                    "INSERT INTO events (kind, at, detail) VALUES ('probe', 'now', '{}')"
                )
                store.commit()
                writes.append(1)
        finally:
            store.close()

    writer = threading.Thread(target=daemon_like)
    writer.start()
    replay = subprocess.Popen(
        [sys.executable, "-m", "triage.cli", "--log-level", "warning", "replay", "--db", str(db)]
        + ["--now", NOW, str(second)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        before = len(writes)
        dest = tmp_path / "backups" / "one"
        got = json.loads(triage("backup", "--db", str(db), "--json", str(dest)).stdout)
        assert len(writes) > before  # the writer committed while the copy was taken
    finally:
        stop.set()
        writer.join(30)
        assert replay.wait(120) == 0
    assert got["integrity"] == "ok"
    assert got["messages"] >= 45 and got["attachments"] >= 1
    assert sorted(p.name for p in dest.iterdir()) == ["t.db", "t.db.files"]
    assert oct(dest.stat().st_mode & 0o777) == "0o700"

    # restore into a new place (the daemon stopped there), and go on working from it
    restored = tmp_path / "restored"
    restored.mkdir(mode=0o700)
    shutil.copy2(dest / "t.db", restored / "t.db")
    shutil.copytree(dest / "t.db.files", restored / "t.db.files")
    triage("replay", "--db", str(restored / "t.db"), "--now", NOW, str(FIXTURES))
    after = backup.check(restored / "t.db")
    assert after.integrity == "ok"  # whole, and every attachment a row names is there
    assert after.tickets == expected  # no ticket lost or doubled by the copy
    assert after.messages == backup.check(whole).messages


def test_a_backup_never_overwrites_and_names_the_fix(tmp_path: Path):
    db = tmp_path / "t.db"
    triage("replay", "--db", str(db), "--now", NOW, str(FIXTURES / "01-plain-text-request.eml"))
    dest = tmp_path / "kept"
    dest.mkdir()
    (dest / "older").write_text("x")
    done = triage("backup", "--db", str(db), str(dest), check=False)
    assert done.returncode == 1
    assert f"{dest}: not empty\n  fix: give a new folder for each backup" in done.stderr
    assert (dest / "older").read_text() == "x"


def test_a_missing_attachment_fails_the_check(tmp_path: Path):
    db = tmp_path / "t.db"
    triage("replay", "--db", str(db), "--now", NOW, str(FIXTURES / "04-attachments-pdf-png.eml"))
    dest = tmp_path / "b"
    triage("backup", "--db", str(db), str(dest))
    victim = next(p for p in (dest / "t.db.files").rglob("*") if p.is_file())
    victim.unlink()
    assert backup.check(dest / "t.db").integrity.startswith("1 attachment(s) named by rows")
