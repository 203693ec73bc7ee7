"""`triage errors retry`: a quarantined message decided again by the engine, from its kept bytes
(each test on SQLite and on PostgreSQL: the conftest `store`)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from triage.core.pipeline import Action, analyse
from triage.engine import batch, quarantine
from triage.store.sqlite import Store

from .conftest import human

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)


def _broken(real):
    """`decide` with a bug for every readable message."""

    def decide(analysis, *args):
        if analysis.email is not None:
            raise KeyError("a bug of that release")
        return real(analysis, *args)

    return decide


def _quarantined(store: Store, rules, monkeypatch, raw: bytes) -> int:
    """`raw` quarantined as internal_error (its bytes kept), as a broken release would."""
    with monkeypatch.context() as m:
        m.setattr(batch, "decide", _broken(batch.decide))
        (d,) = batch.run_batch(store, rules, [analyse(raw, "imap:support/1/7", rules)], NOW, [raw])
    assert (d.action, d.reason) == (Action.QUARANTINED, "internal_error")
    (row,) = quarantine.listing(store)
    return row.id


def test_a_retried_message_becomes_the_ticket_it_would_have_been(store, rules, monkeypatch):
    raw = human(Message_ID="<q1@acme.example>", Subject="VPN down")
    first = _quarantined(store, rules, monkeypatch, raw)
    d = quarantine.retry(store, rules, first, NOW)
    assert (d.action, d.ticket, d.auto_reply) == (Action.TICKET, "T-000001", True)
    assert quarantine.listing(store) == []
    rows = store.conn.execute("SELECT source, action FROM messages").fetchall()
    assert rows == [("imap:support/1/7", "ticket")]
    kinds = [k for (k,) in store.conn.execute("SELECT kind FROM events ORDER BY id")]
    assert "quarantined" not in kinds and "created" in kinds
    assert store.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1


def test_a_retry_that_fails_again_keeps_the_quarantine_record(store, rules, monkeypatch):
    raw = human(Message_ID="<q2@acme.example>")
    first = _quarantined(store, rules, monkeypatch, raw)
    monkeypatch.setattr(batch, "decide", _broken(batch.decide))
    d = quarantine.retry(store, rules, first, NOW)
    assert d.action == Action.QUARANTINED
    assert [q.id for q in quarantine.listing(store)] == [first]
    assert store.conn.execute("SELECT COUNT(*) FROM tickets").fetchone()[0] == 0


def test_a_message_that_is_not_quarantined_is_not_retried(store, rules):
    batch.run_batch(store, rules, [analyse(human(), "m", rules)], NOW)
    with pytest.raises(quarantine.RetryError, match="is not quarantined"):
        quarantine.retry(store, rules, 1, NOW)
