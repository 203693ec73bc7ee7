"""The facts a batch is decided against: read once from the store, or carried forward by hand.

`Facts.after` must say what the store would say once a decision is written (so a batch
decides as its messages did one at a time), and the one query that reads them must find
everything by index.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from triage.core.pipeline import Facts, analyse, decide, needs, render
from triage.core.replies import AckIds
from triage.engine.batch import run_batch
from triage.store.facts import FACTS_SQL
from triage.store.sqlite import Store

from .conftest import FIXTURES, human
from .test_outbox import dsn

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
TABLES = ("messages", "outbox", "tickets", "bounces")


def test_the_facts_of_a_batch_are_read_in_one_statement_by_index_only(tmp_path):
    store = Store(tmp_path / "t.db")
    plan = store.conn.execute(
        "EXPLAIN QUERY PLAN " + FACTS_SQL,
        {k: "[]" for k in ("keys", "ids", "numbers", "lowered", "addresses")} | {"since": ""},
    ).fetchall()
    store.close()
    steps = [row[3] for row in plan]
    scanned = [s for s in steps if re.match(rf"SCAN ({'|'.join(TABLES)}|k)\b", s)]
    assert scanned == [], steps
    for table in TABLES:
        assert any(s.startswith(f"SEARCH {table}") for s in steps), (table, steps)


def test_the_store_answers_as_the_facts_carried_forward_do(rules, store):
    """Every fixture decided by the core alone and by the engine into a database; then what
    each fixture names is asked of both: the same answer, question by question."""
    analyses = [analyse(p.read_bytes(), str(p), rules) for p in sorted(FIXTURES.glob("*.eml"))]
    carried = Facts.empty()
    for n, a in enumerate(analyses):
        d = decide(a, carried, rules, NOW)
        carried = carried.after(render(d, rules, NOW, AckIds(f"{n:016x}", "0" * 24)), NOW)
    run_batch(store, rules, analyses[:40], NOW)  # two batches: the second reads the first
    run_batch(store, rules, analyses[40:], NOW)
    wanted = needs(analyses, rules.config.ticket_prefix)
    read = store.facts_for(wanted, NOW)
    assert read.next_ticket == carried.next_ticket == 23
    assert {k: read.stored[k] for k in wanted.keys if k in read.stored} == {
        k: carried.stored[k] for k in wanted.keys if k in carried.stored
    }
    for mid in wanted.message_ids:
        assert read.ticket_for_message_ids((mid,)) == carried.ticket_for_message_ids((mid,)), mid
        assert read.sent_by_us(mid) is carried.sent_by_us(mid) is False
    for number in wanted.numbers:
        assert read.ticket_by_number(number) == carried.ticket_by_number(number), number
    since = NOW - timedelta(hours=24)
    for address in wanted.addresses:
        assert read.acks_since(address, since) == carried.acks_since(address, since), address


def test_a_bounce_of_an_acknowledgement_in_the_same_batch_silences_its_address(rules, store):
    """The core alone: our acknowledgement to gone@ bounces two messages later, and the next
    message from gone@ gets none. The engine, over two batches, says the same."""
    first = human(From="gone@acme.example", Message_ID="<g1@acme.example>")
    again = human(From="gone@acme.example", Message_ID="<g2@acme.example>", Subject="more")
    facts = Facts.empty()
    d = decide(analyse(first, "1", rules), facts, rules, NOW)
    rendered = render(d, rules, NOW, AckIds("ab" * 8, "cd" * 12))
    assert rendered.ack is not None
    facts = facts.after(rendered, NOW)
    core = []
    for n, raw in enumerate((dsn(rendered.ack.message_id, "gone@acme.example"), again)):
        d = decide(analyse(raw, str(n), rules), facts, rules, NOW)
        facts = facts.after(render(d, rules, NOW, AckIds("ef" * 8, "01" * 12)), NOW)
        core.append(d)
    assert core[0].bounce is not None and core[0].linked_ticket == "T-000001"
    assert core[1].auto_reply is False and "bounced permanently" in core[1].reply_suppressed

    run_batch(store, rules, [analyse(first, "1", rules)], NOW)
    (ack_id,) = store.conn.execute("SELECT message_id FROM outbox").fetchone()
    engine = run_batch(
        store,
        rules,
        [analyse(dsn(ack_id, "gone@acme.example"), "0", rules), analyse(again, "1", rules)],
        NOW,
    )
    assert [(d.action, d.linked_ticket, d.reply_suppressed) for d in engine] == [
        (d.action, d.linked_ticket, d.reply_suppressed) for d in core
    ]


def test_our_own_mail_queued_earlier_in_the_batch_is_recognised_coming_back(rules):
    """An acknowledgement rendered for one message and fed back (its automation headers
    stripped by a forwarder) in the same batch: filtered by its Message-ID."""
    facts = Facts.empty()
    d = decide(analyse(human(Message_ID="<o1@x>"), "1", rules), facts, rules, NOW)
    rendered = render(d, rules, NOW, AckIds("12" * 8, "34" * 12))
    assert rendered.ack is not None
    facts = facts.after(rendered, NOW)
    back = human(From="Jane <jane@acme.example>", Message_ID=rendered.ack.message_id)
    assert facts.sent_by_us(rendered.ack.message_id)
    d = decide(analyse(back, "2", rules), facts, rules, NOW)
    assert (d.action, d.reason) == ("filtered", "own-message-id")
