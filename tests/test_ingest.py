"""Stage two's guard: one message that breaks the writer is quarantined, the batch goes on."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from triage.core.pipeline import Action, analyse
from triage.engine import record as ingest
from triage.store.sqlite import Store

from .conftest import human

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)


def _breaking(real, error: Exception):
    def decide(analysis, *args):
        if analysis.email is not None and analysis.email.subject == "boom":
            raise error
        return real(analysis, *args)

    return decide


def test_an_error_of_one_message_quarantines_it_and_keeps_its_bytes(tmp_path, rules, monkeypatch):
    monkeypatch.setattr(ingest, "decide", _breaking(ingest.decide, KeyError("no such thing")))
    store = Store(tmp_path / "t.db")
    recorder = ingest.Recorder(rules, store)
    raws = [
        human(Message_ID="<a@x>", Subject="first"),
        human(Message_ID="<b@x>", Subject="boom"),
        human(Message_ID="<c@x>", Subject="third"),
    ]
    out = [
        recorder.record(analyse(raw, f"m{n}", rules), NOW, raw=raw) for n, raw in enumerate(raws)
    ]
    recorder.commit()
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
    again = recorder.record(analyse(raws[1], "m1-again", rules), NOW, raw=raws[1])
    assert again.action == Action.DUPLICATE
    store.close()


def test_without_bytes_the_message_is_still_recorded_once(tmp_path, rules, monkeypatch):
    monkeypatch.setattr(ingest, "decide", _breaking(ingest.decide, ValueError("odd")))
    store = Store(tmp_path / "t.db")
    recorder = ingest.Recorder(rules, store)
    raw = human(Message_ID="<b@x>", Subject="boom")
    first = recorder.record(analyse(raw, "file.eml", rules), NOW)
    recorder.commit()
    second = recorder.record(analyse(raw, "file.eml", rules), NOW)
    assert (first.action, second.action) == (Action.QUARANTINED, Action.DUPLICATE)
    store.close()


@pytest.mark.parametrize(
    "error", [sqlite3.OperationalError("disk I/O error"), OSError(28, "No space left on device")]
)
def test_a_failing_database_or_disk_stops_the_batch(tmp_path, rules, monkeypatch, error):
    monkeypatch.setattr(ingest, "decide", _breaking(ingest.decide, error))
    store = Store(tmp_path / "t.db")
    recorder = ingest.Recorder(rules, store)
    with pytest.raises(type(error)):
        recorder.record(analyse(human(Subject="boom"), "m", rules), NOW, raw=b"x")
    store.close()
