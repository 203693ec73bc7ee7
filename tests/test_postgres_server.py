"""The private PostgreSQL of the tests: it starts, answers psycopg over TCP with a password,
and leaves nothing running when stopped."""

from __future__ import annotations

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
