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


def _half_written(how: str):
    """records.event, failing for <b@x>'s "created" event, after its ticket row went in: by a
    Python error, or by a statement the database refuses (on PostgreSQL that aborts the whole
    transaction, not only the statement)."""
    from triage.store import records

    real = records.event

    def event(st, ticket_id, key, kind, at, detail):
        if kind == "created" and key == "<b@x>":
            if how == "python":
                raise RuntimeError("broken half-way")
            st.conn.execute("INSERT INTO message_bytes (sha256, raw) VALUES ('x', NULL)")
        return real(st, ticket_id, key, kind, at, detail)

    event.__wrapped__ = real  # type: ignore[attr-defined]
    return event


def _three():
    return [
        human(Message_ID=f"<{c}@x>", Subject=s, From=f"{c} <{c}@customer.example>")
        for c, s in (("a", "first"), ("b", "second"), ("c", "third"))
    ]


@pytest.mark.parametrize("how", ["python", "sql"])
def test_a_message_whose_rows_fail_half_written_leaves_none_and_the_rest_are_kept(
    store, rules, monkeypatch, how
):
    """A batch is first written without a savepoint per message; a message that fails after
    some of its rows went in makes the batch be written again, each in its own savepoint."""
    from triage.store import records

    monkeypatch.setattr(records, "event", _half_written(how))
    raws = _three()
    analyses = [analyse(raw, f"m{n}", rules) for n, raw in enumerate(raws)]
    out = ingest.run_batch(store, rules, analyses, NOW, raws)
    assert [(d.action, d.ticket) for d in out] == [
        (Action.TICKET, "T-000001"),
        (Action.QUARANTINED, None),
        (Action.TICKET, "T-000002"),
    ]
    assert out[1].reason == "internal_error"
    messages = store.conn.execute("SELECT source, action FROM messages ORDER BY id").fetchall()
    assert [tuple(m) for m in messages] == [
        ("m0", "ticket"),
        ("m1", "quarantined"),
        ("m2", "ticket"),
    ]
    tickets = store.conn.execute("SELECT number, message_key FROM tickets ORDER BY id").fetchall()
    assert [tuple(t) for t in tickets] == [("T-000001", "<a@x>"), ("T-000002", "<c@x>")]
    events = store.conn.execute("SELECT message_key FROM events ORDER BY id").fetchall()
    assert "<b@x>" not in {e[0] for e in events}
    assert store.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 2
    assert (
        store.conn.execute("SELECT COUNT(*) FROM message_bytes WHERE sha256 = 'x'").fetchone()[0]
        == 0
    )


def test_a_failing_message_in_a_batch_the_caller_began_keeps_the_callers_rows(
    store, rules, monkeypatch
):
    """`errors retry` and `review release` begin the transaction and write before the batch:
    a message failing inside it is quarantined by its savepoint, and the caller's rows stay."""
    from triage.core.replies import Ack
    from triage.store import records

    monkeypatch.setattr(records, "event", _half_written("python"))
    store.begin()
    store.queue_alert(Ack("ops@msp.example", "alert", "<alert@x>", b"raw"), NOW)
    raws = _three()
    out = ingest.write_batch(store, rules, [analyse(r, "m", rules) for r in raws], NOW, raws)
    store.commit()
    assert [d.action for d in out] == [Action.TICKET, Action.QUARANTINED, Action.TICKET]
    alerts = store.conn.execute("SELECT message_id FROM outbox WHERE ticket_id IS NULL").fetchall()
    assert [a[0] for a in alerts] == ["<alert@x>"]


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


def test_a_writer_that_slips_in_between_the_two_tries_is_numbered_around(
    tmp_path, rules, monkeypatch
):
    """The write lock is let go when the first try is rolled back: another process may write
    a ticket before the second try, which reads the facts again and numbers after it."""
    from triage.store import records
    from triage.store.sqlite import Store

    monkeypatch.setattr(records, "event", _half_written("python"))
    store = Store(tmp_path / "t.db")
    other = Store(tmp_path / "t.db")
    rollback = store.rollback
    slipped: list[str] = []

    def rollback_then_another_writes() -> None:
        rollback()
        if slipped:
            return
        monkeypatch.setattr(records, "event", records.event.__wrapped__)  # the other is sound
        raw = human(Message_ID="<z@x>", Subject="meanwhile", From="z <z@elsewhere.example>")
        (d,) = ingest.run_batch(other, rules, [analyse(raw, "z", rules)], NOW, [raw])
        slipped.append(d.ticket)
        monkeypatch.setattr(records, "event", _half_written("python"))

    monkeypatch.setattr(store, "rollback", rollback_then_another_writes)
    raws = _three()
    out = ingest.run_batch(store, rules, [analyse(r, "m", rules) for r in raws], NOW, raws)
    assert [(d.action, d.ticket) for d in out] == [
        (Action.TICKET, "T-000002"),
        (Action.QUARANTINED, None),
        (Action.TICKET, "T-000003"),
    ]
    assert slipped == ["T-000001"]
    store.close()
    other.close()
