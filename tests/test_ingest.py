"""Stage two's guard: one message that breaks the writer is quarantined, the batch goes on."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from triage.core.pipeline import Action, analyse
from triage.engine import batch as ingest

from .conftest import human

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)


def _breaking(real, error: Exception):
    def decide(analysis, *args):
        if analysis.email is not None and analysis.email.subject == "boom":
            raise error
        return real(analysis, *args)

    return decide


def test_an_error_of_one_message_quarantines_it_and_keeps_its_bytes(store, rules, monkeypatch):
    monkeypatch.setattr(ingest, "decide", _breaking(ingest.decide, KeyError("no such thing")))
    raws = [
        human(Message_ID="<a@x>", Subject="first"),
        human(Message_ID="<b@x>", Subject="boom"),
        human(Message_ID="<c@x>", Subject="third"),
    ]
    analyses = [analyse(raw, f"m{n}", rules) for n, raw in enumerate(raws)]
    out = ingest.run_batch(store, rules, analyses, NOW, raws)
    assert [d.action for d in out] == [Action.TICKET, Action.QUARANTINED, Action.TICKET]
    assert out[1].reason == "internal_error"
    assert "KeyError" in out[1].reasons[0]
    rows = store.conn.execute(
        "SELECT source, action, message_key FROM messages ORDER BY id"
    ).fetchall()
    assert [(s, a) for s, a, _ in rows] == [
        ("m0", "ticket"),
        ("m1", "quarantined"),
        ("m2", "ticket"),
    ]
    kept = store.files / "quarantine" / f"{rows[1][2][7:]}.eml"
    assert kept.read_bytes() == raws[1]
    assert store.conn.execute("SELECT COUNT(*) FROM tickets").fetchone()[0] == 2
    # a second delivery of the same bytes is a duplicate, not a second quarantine row
    (again,) = ingest.run_batch(store, rules, [analyse(raws[1], "m1-again", rules)], NOW, raws[1:2])
    assert again.action == Action.DUPLICATE


def test_without_bytes_the_message_is_still_recorded_once(store, rules, monkeypatch):
    monkeypatch.setattr(ingest, "decide", _breaking(ingest.decide, ValueError("odd")))
    raw = human(Message_ID="<b@x>", Subject="boom")
    (first,) = ingest.run_batch(store, rules, [analyse(raw, "file.eml", rules)], NOW)
    (second,) = ingest.run_batch(store, rules, [analyse(raw, "file.eml", rules)], NOW)
    assert (first.action, second.action) == (Action.QUARANTINED, Action.DUPLICATE)


@pytest.mark.parametrize(
    "error",
    [
        sqlite3.OperationalError("disk I/O error"),
        OSError(28, "No space left on device"),
        pytest.param("postgres", id="postgres-connection-lost"),
    ],
)
def test_a_failing_database_or_disk_stops_the_batch(store, rules, monkeypatch, error):
    if error == "postgres":  # PostgreSQL's own: the connection to the server is gone
        if store.dialect != "postgresql":
            pytest.skip("PostgreSQL's error")
        import psycopg

        error = psycopg.OperationalError("server closed the connection unexpectedly")
    monkeypatch.setattr(ingest, "decide", _breaking(ingest.decide, error))
    first = analyse(human(Message_ID="<ok@x>", Subject="fine"), "m0", rules)
    boom = analyse(human(Subject="boom"), "m1", rules)
    with pytest.raises(type(error)):
        ingest.run_batch(store, rules, [first, boom], NOW, [None, b"x"])
    # nothing of the batch is committed: it comes back whole
    assert store.conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0
