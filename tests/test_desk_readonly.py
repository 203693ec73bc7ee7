"""The desk opens the database to read only: it never writes and never takes the write lock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from triage.desk.readonly import connect


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
