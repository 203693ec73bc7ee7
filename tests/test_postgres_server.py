"""The private PostgreSQL of the tests: it starts, answers psycopg over TCP with a password,
and leaves nothing running when stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import procs
from tests.support.postgres import PASSWORD, Postgres, skip_reason


def test_a_private_postgres_starts_answers_and_stops_leaving_nothing(tmp_path):
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    import psycopg

    pg = Postgres.start(tmp_path)
    pid = pg.pid
    assert pid is not None
    started = procs.starttime(pid)
    backends = procs.descendants(pid)
    url = pg.create_database("first")
    with psycopg.connect(url, password=PASSWORD) as conn:
        assert conn.execute("SELECT current_database(), 1 + 1").fetchone() == ("first", 2)
        assert conn.info.port == pg.port
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(url, password="wrong").close()
    root = pg.root
    pg.stop()
    assert not procs.alive(pid, started)
    assert procs.wait_gone(backends, 1)
    assert not root.exists()
    assert "database system is shut down" in (tmp_path / f"{root.name}.log").read_text()


def test_a_test_process_killed_outright_leaves_no_postgres_behind(tmp_path):
    """SIGKILL to the process that started it (no atexit, no stop()): the server shuts down."""
    import os
    import subprocess
    import sys
    import time

    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    if os.geteuid() != 0:
        pytest.skip("the parent-death signal is set by setpriv, used as root only")
    code = (
        "import sys, time\n"
        "from tests.support.postgres import Postgres\n"
        "pg = Postgres.start()\n"
        "print(pg.pid, pg.root, flush=True)\n"
        "time.sleep(120)\n"
    )
    root = Path(__file__).resolve().parent.parent
    child = subprocess.Popen(
        [sys.executable, "-c", code], cwd=root, stdout=subprocess.PIPE, text=True
    )
    try:
        pid_text, folder = child.stdout.readline().split()
        pid = int(pid_text)
        started = procs.starttime(pid)
        assert started is not None
    finally:
        child.kill()
        child.wait(10)
    deadline = time.monotonic() + 15
    while procs.alive(pid, started) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = procs.alive(pid, started)
    if alive:
        os.kill(pid, 9)
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    assert not alive
