"""Each kind of `[[sink]]` gives a sink that keeps the Sink protocol, and a preview of what it
would receive (for `make demo`) that holds nothing secret."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from triage.sinks.base import Delivery, Sink
from triage.sinks.chat import ChatSink
from triage.sinks.config import SinkConfigError, parse_sink
from triage.sinks.connectwise import ConnectWiseSink
from triage.sinks.events import TICKET_APPENDED, TICKET_CREATED, Event
from triage.sinks.kinds import make_sink, preview
from triage.sinks.webhook import WebhookSink

AT = datetime(2026, 3, 10, 4, 26, tzinfo=UTC)
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX"

TABLES = {
    "webhook": {"url": "https://hooks.example.com/t", "secret_env": "HOOK_SECRET"},
    "connectwise": {
        "site": "api-eu.myconnectwise.net",
        "company_id": "examplecorp",
        "public_key": "pub",
        "private_key_env": "CW_PRIVATE",
        "client_id": "cid",
        "board": 1,
        "default_company": "Catchall",
    },
    "slack": {"url_env": "SLACK_URL"},
    "teams": {"url_env": "SLACK_URL"},
    "email": {"to": ["oncall@example.com"]},
}
CLASSES = {
    "webhook": WebhookSink,
    "connectwise": ConnectWiseSink,
    "slack": ChatSink,
    "teams": ChatSink,
}


def config(kind: str):
    table = {"name": f"s-{kind}", "kind": kind, "events": ["ticket.created", "ticket.appended"]}
    return parse_sink("/etc/triage/triage.toml", "sink[0]", table | TABLES[kind])


def event(type: str = TICKET_CREATED) -> Event:
    return Event.for_ticket(
        type,
        "evt_1",
        AT,
        ticket="T-000123",
        subject="Server down",
        priority="P1",
        due=AT,
        requester="ceo@acme.example",
    )


@pytest.mark.parametrize("kind", ["webhook", "connectwise", "slack", "teams"])
def test_make_sink_gives_a_sink(kind):
    sink = make_sink(config(kind))
    assert isinstance(sink, CLASSES[kind]) and isinstance(sink, Sink)
    assert sink.name == f"s-{kind}" and sink.kind == kind
    asyncio.run(sink.aclose())


def test_an_email_sink_has_no_object_of_its_own():
    assert make_sink(config("email")) is None


@pytest.mark.parametrize("kind", list(TABLES))
@pytest.mark.parametrize("type", [TICKET_CREATED, TICKET_APPENDED])
def test_a_preview_shows_what_is_sent_and_no_secret(kind, type, monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", WHSEC)
    monkeypatch.setenv("CW_PRIVATE", "privatekey")
    monkeypatch.setenv("SLACK_URL", SLACK_URL)
    shown = json.dumps(preview(config(kind), Delivery.first(event(type), f"s-{kind}")))
    assert "T-000123" in shown
    for secret in (WHSEC, WHSEC[6:], "privatekey", "XXXXSECRETXXXX"):
        assert secret not in shown


def test_a_connectwise_sink_takes_only_ticket_events():
    table = {"name": "psa", "kind": "connectwise", "events": ["sla.breached"]} | TABLES[
        "connectwise"
    ]
    with pytest.raises(SinkConfigError) as caught:
        parse_sink("/etc/triage/triage.toml", "sink[0]", table)
    assert "[sink[0].events] a connectwise sink does nothing with 'sla.breached'" in str(
        caught.value
    )
