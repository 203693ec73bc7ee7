"""Events as the sinks receive them: names, the byte-stable JSON body, subscriptions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from triage.sinks.events import (
    EVENT_TYPES,
    MAILBOX_FAILING,
    MESSAGE_QUARANTINED,
    SLA_BREACHED,
    TEXT_MAX,
    TICKET_APPENDED,
    TICKET_CREATED,
    TICKET_PRIORITY_CHANGED,
    Event,
    Subscription,
    delivery_id,
)

AT = datetime(2026, 3, 10, 4, 26, 7, 123456, tzinfo=UTC)
DUE = datetime(2026, 3, 10, 5, 26, tzinfo=UTC)


def ticket_event(type: str = TICKET_CREATED, **over) -> Event:
    fields = dict(
        ticket="T-000123",
        subject="Server down",
        priority="P1",
        due=DUE,
        requester="ceo@acme.example",
        requester_name="Dana Boss",
        contact="ceo@acme.example",
        company="Acme Corp",
        queue="infra",
        vip=True,
        reasons=["priority: 'down' in the subject → P1", "contact: exact"],
        message_id="<m1@acme.example>",
        text="The file server is down since 04:00.",
    )
    fields.update(over)
    return Event.for_ticket(type, "evt_1", AT, **fields)


def test_the_issues_name_eleven_events():
    assert EVENT_TYPES == (
        "ticket.created",
        "ticket.appended",
        "ticket.priority_changed",
        "ticket.assigned",
        "ticket.noted",
        "ticket.status_changed",
        "sla.warning",
        "sla.breached",
        "mailbox.failing",
        "mailbox.recovered",
        "message.quarantined",
    )


def test_body_is_the_standard_webhooks_shape_sorted_and_compact():
    body = ticket_event().body()
    assert body == (
        b'{"data":{"action":"ticket","company":"Acme Corp","contact":"ceo@acme.example",'
        b'"due":"2026-03-10T05:26:00Z","message_id":"<m1@acme.example>","priority":"P1",'
        b'"queue":"infra","reasons":["priority: \'down\' in the subject \xe2\x86\x92 P1","contact: exact"],'
        b'"requester":"ceo@acme.example","requester_name":"Dana Boss","subject":"Server down",'
        b'"text":"The file server is down since 04:00.","ticket":"T-000123","vip":true},'
        b'"timestamp":"2026-03-10T04:26:07Z","type":"ticket.created"}'
    )


def test_ticket_events_hold_every_field_the_issue_names():
    data = json.loads(ticket_event().body())["data"]
    for key in (
        "ticket",
        "subject",
        "priority",
        "due",
        "requester",
        "contact",
        "company",
        "queue",
        "vip",
        "action",
        "reasons",
    ):
        assert key in data


def test_priority_change_and_sla_events_carry_their_extra_field():
    changed = ticket_event(TICKET_PRIORITY_CHANGED, previous_priority="P3")
    assert changed.data["previous_priority"] == "P3"
    breached = ticket_event(SLA_BREACHED, sla="respond")
    assert breached.data["sla"] == "respond"
    assert "sla" not in ticket_event().data


def test_text_is_cut_to_its_bound():
    assert len(ticket_event(text="x" * (TEXT_MAX + 50)).data["text"]) == TEXT_MAX


def test_a_due_time_in_any_zone_is_written_in_utc():
    east = timezone(timedelta(hours=9))
    event = ticket_event(due=datetime(2026, 3, 10, 14, 26, tzinfo=east))
    assert event.data["due"] == "2026-03-10T05:26:00Z"


def test_stored_and_read_back_the_body_is_the_same_bytes():
    event = ticket_event()
    again = Event.from_json(event.to_json())
    assert again.body() == event.body()
    assert again.id == event.id and again.type == event.type


@pytest.mark.parametrize("bad", ["", "evt.1", "évt", "a b\n"])
def test_an_event_id_that_would_break_the_signed_string_is_refused(bad):
    with pytest.raises(ValueError):
        Event(bad, TICKET_CREATED, AT, {})


def test_unknown_type_and_naive_time_are_refused():
    with pytest.raises(ValueError, match="unknown event type"):
        Event("e", "ticket.deleted", AT, {})
    with pytest.raises(ValueError, match="aware"):
        Event("e", TICKET_CREATED, datetime(2026, 3, 10), {})


def test_delivery_id_is_stable_per_event_and_sink_and_has_no_dot():
    one = delivery_id("evt_1", "hook")
    assert one == delivery_id("evt_1", "hook")
    assert one != delivery_id("evt_1", "slack")
    assert one != delivery_id("evt_2", "hook")
    assert one.startswith("msg_") and "." not in one and one.isascii()


def mailbox_event() -> Event:
    return Event.for_mailbox(
        MAILBOX_FAILING, "evt_m", AT, mailbox="support", host="imap.example", kind="auth"
    )


ONCALL = Subscription(
    frozenset({TICKET_CREATED, SLA_BREACHED, MAILBOX_FAILING}), frozenset({"P1"}), vip="also"
)


@pytest.mark.parametrize(
    ("subscription", "event", "passes"),
    [
        # on-call: P1 or VIP tickets, breaches, mailbox alerts
        (ONCALL, ticket_event(priority="P1", vip=False), True),
        (ONCALL, ticket_event(priority="P3", vip=True), True),  # VIP passes whatever its priority
        (ONCALL, ticket_event(priority="P3", vip=False), False),
        (ONCALL, ticket_event(TICKET_APPENDED), False),  # not subscribed
        (ONCALL, ticket_event(SLA_BREACHED, priority="P2", vip=False), False),
        (ONCALL, mailbox_event(), True),  # no priority: ticket filters do not apply
        # VIP only
        (Subscription(frozenset({TICKET_CREATED}), vip="only"), ticket_event(vip=False), False),
        (Subscription(frozenset({TICKET_CREATED}), vip="only"), ticket_event(vip=True), True),
        # a priority list without "also": VIP does not widen it
        (
            Subscription(frozenset({TICKET_CREATED}), frozenset({"P1"})),
            ticket_event(priority="P2", vip=True),
            False,
        ),
        # queues narrow, and combine with the rest
        (
            Subscription(frozenset({TICKET_CREATED}), queues=frozenset({"billing"})),
            ticket_event(queue="infra"),
            False,
        ),
        (
            Subscription(frozenset({TICKET_CREATED}), queues=frozenset({"infra"})),
            ticket_event(queue="infra"),
            True,
        ),
        (
            Subscription(frozenset({MESSAGE_QUARANTINED}), frozenset({"P1"}), vip="only"),
            Event.quarantined("evt_q", AT, source="imap:support/7", message_id=None, error="x"),
            True,
        ),
    ],
)
def test_subscription(subscription, event, passes):
    assert subscription.matches(event) is passes
