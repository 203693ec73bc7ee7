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


def test_a_message_whose_rows_fail_half_written_leaves_none_and_the_rest_are_kept(
    store, rules, monkeypatch
):
    """A batch is first written without a savepoint per message; a message that fails after
    some of its rows went in makes the batch be written again, each in its own savepoint."""
    from triage.store import records

    real = records.event

    def event(st, ticket_id, key, kind, at, detail):
        if kind == "created" and key == "<b@x>":  # after the ticket's own row
            raise RuntimeError("broken half-way")
        return real(st, ticket_id, key, kind, at, detail)

    monkeypatch.setattr(records, "event", event)
    raws = [
        human(Message_ID=f"<{c}@x>", Subject=s, From=f"{c} <{c}@customer.example>")
        for c, s in (("a", "first"), ("b", "second"), ("c", "third"))
    ]
    analyses = [analyse(raw, f"m{n}", rules) for n, raw in enumerate(raws)]
    out = ingest.run_batch(store, rules, analyses, NOW, raws)
    assert [(d.action, d.ticket) for d in out] == [
        (Action.TICKET, "T-000001"),
        (Action.QUARANTINED, None),
        (Action.TICKET, "T-000002"),
    ]
    tickets = store.conn.execute("SELECT number, message_key FROM tickets ORDER BY id").fetchall()
    assert [tuple(t) for t in tickets] == [("T-000001", "<a@x>"), ("T-000002", "<c@x>")]
    events = store.conn.execute("SELECT message_key FROM events ORDER BY id").fetchall()
    assert "<b@x>" not in {e[0] for e in events}
    assert store.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 2


def test_a_batch_that_fails_nowhere_is_written_without_savepoints(tmp_path, rules):
    from triage.store.sqlite import Store

    store = Store(tmp_path / "t.db")
    seen: list[str] = []
    store.conn.set_trace_callback(seen.append)
    raws = [human(Message_ID=f"<{n}@x>", Subject=f"s{n}") for n in range(3)]
    out = ingest.run_batch(store, rules, [analyse(r, "m", rules) for r in raws], NOW, raws)
    store.conn.set_trace_callback(None)
    assert [d.action for d in out] == [Action.TICKET] * 3
    assert not [s for s in seen if "SAVEPOINT" in s.upper()]
    assert store.conn.execute("SELECT COUNT(*) FROM tickets").fetchone()[0] == 3
    store.close()
