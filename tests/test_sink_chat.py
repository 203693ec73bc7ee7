"""Slack and Teams: the alert people on call read, the JSON each service documents, and how
each service's answers are taken; against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from tests.servers import free_port
from tests.support.http_receiver import HttpReceiver, Reply
from triage.sinks.base import Delivery, Status
from triage.sinks.chat import ChatSink
from triage.sinks.config import parse_sink
from triage.sinks.events import (
    EVENT_TYPES,
    MAILBOX_FAILING,
    MAILBOX_RECOVERED,
    SLA_BREACHED,
    TICKET_CREATED,
    TICKET_EVENTS,
    Event,
)
from triage.sinks.messages import alert, mail_text, slack_payload, teams_payload

AT = datetime(2026, 3, 10, 4, 26, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def p1(type: str = TICKET_CREATED, **over) -> Event:
    fields = dict(
        ticket="T-000123",
        subject="File server down",
        priority="P1",
        due=datetime(2026, 3, 10, 5, 26, tzinfo=UTC),
        requester="ceo@acme.example",
        requester_name="Dana Boss",
        company="Acme Corp",
        vip=True,
        reasons=["requester: the author in From", "priority: 'down' in the subject → P1"],
    )
    fields.update(over)
    return Event.for_ticket(type, "evt_1", AT, **fields)


def test_the_alert_has_the_number_requester_due_time_in_the_zone_and_top_reason():
    a = alert(p1(), BERLIN)
    assert a.title == "P1 VIP ticket T-000123: File server down"
    assert a.facts == (
        ("Requester", "Dana Boss <ceo@acme.example>"),
        ("Company", "Acme Corp"),
        ("Due", "Tue 10 Mar 2026 06:26 CET"),
    )
    assert a.reason == "priority: 'down' in the subject → P1"
    assert a.urgent


def test_slack_payload_is_text_and_blocks():
    assert slack_payload(alert(p1(), BERLIN)) == {
        "text": "P1 VIP ticket T-000123: File server down\n"
        "Requester: Dana Boss &lt;ceo@acme.example&gt;\nCompany: Acme Corp\n"
        "Due: Tue 10 Mar 2026 06:26 CET\nWhy: priority: 'down' in the subject → P1",
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "*P1 VIP ticket T-000123: File server down*"},
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*Requester:* Dana Boss &lt;ceo@acme.example&gt;\n"
                    "*Company:* Acme Corp\n*Due:* Tue 10 Mar 2026 06:26 CET",
                },
            },
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": "Why: priority: 'down' in the subject → P1"}
                ],
            },
        ],
        "unfurl_links": False,
        "unfurl_media": False,
    }


def test_teams_payload_is_an_adaptive_card_message():
    sent = teams_payload(alert(p1(), BERLIN))
    assert sent["type"] == "message"
    [attachment] = sent["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    title, facts, why = card["body"]
    assert title["text"] == "P1 VIP ticket T-000123: File server down"
    assert title["color"] == "Attention"
    assert facts["facts"][2] == {"title": "Due", "value": "Tue 10 Mar 2026 06:26 CET"}
    assert why["text"] == "Why: priority: 'down' in the subject → P1"


def test_a_strangers_subject_cannot_page_the_channel_or_plant_a_link():
    event = p1(subject="<!channel> pay <https://evil.example|here> & [click](https://evil.example)")
    slack = json.dumps(slack_payload(alert(event, BERLIN)))
    assert "<!channel>" not in slack and "&lt;!channel&gt;" in slack
    assert "<https://evil" not in slack
    teams = teams_payload(alert(event, BERLIN))["attachments"][0]["content"]["body"][0]["text"]
    assert r"\[click\](https://evil.example)" in teams


@pytest.mark.parametrize("type", EVENT_TYPES)
def test_every_event_has_an_alert(type):
    if type in TICKET_EVENTS:
        event = p1(type, previous_priority="P3", sla="resolve")
    elif type in (MAILBOX_FAILING, MAILBOX_RECOVERED):
        event = Event.for_mailbox(
            type,
            "evt_m",
            AT,
            mailbox="support",
            host="imap.example",
            kind="auth",
            error="AUTHENTICATIONFAILED",
            since=AT,
            failures=5,
        )
    else:
        event = Event.quarantined(
            "evt_q", AT, source="imap:support/42", message_id="<x@y>", error="parse timeout"
        )
    a = alert(event, BERLIN)
    assert a.title and a.facts
    subject, body = mail_text(a, AT, BERLIN)
    assert subject == f"triage: {a.title}" and "Raised Tue 10 Mar 2026 05:26 CET" in body


def test_breach_and_mailbox_titles():
    assert alert(p1(SLA_BREACHED, vip=False, sla="respond"), BERLIN).title == (
        "SLA breached, P1 T-000123 was due Tue 10 Mar 2026 06:26 CET: File server down"
    )
    failing = Event.for_mailbox(MAILBOX_FAILING, "e", AT, mailbox="support", host="h", kind="auth")
    assert alert(failing, BERLIN).title == "Mailbox support is failing (auth)"


# -- the sinks, against a receiver --------------------------------------------------------


def chat_sink(tmp_path, kind: str, url: str, monkeypatch, **extra) -> ChatSink:
    monkeypatch.setenv("CHAT_URL", url)
    table = {
        "name": f"oncall-{kind}",
        "kind": kind,
        "url_env": "CHAT_URL",
        "events": ["ticket.created"],
        "zone": "Europe/Berlin",
        **extra,
    }
    return ChatSink(parse_sink(tmp_path / "triage.toml", "sink[0]", table))


def run(sink: ChatSink, delivery: Delivery):
    async def go():
        try:
            return await sink.deliver(delivery)
        finally:
            await sink.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("kind", ["slack", "teams"])
def test_the_sink_posts_the_documented_json(tmp_path, monkeypatch, kind):
    with HttpReceiver.start(path="/services/T0/B0/secretpart") as rx:
        sink = chat_sink(tmp_path, kind, rx.url, monkeypatch)
        rx.then(Reply.status(200, "ok") if kind == "slack" else Reply.status(202))
        outcome = run(sink, Delivery.first(p1(), sink.name))
    assert outcome.status is Status.SENT
    [got] = rx.requests
    assert got.path == "/services/T0/B0/secretpart"
    assert got.headers["content-type"] == "application/json"
    expected = slack_payload if kind == "slack" else teams_payload
    assert got.json() == expected(alert(p1(), BERLIN))


@pytest.mark.parametrize(
    ("reply", "status", "wait"),
    [
        (Reply.status(400, "invalid_payload"), Status.FAILED, None),
        (Reply.status(404, "channel_not_found"), Status.FAILED, None),
        (Reply.status(410, "channel_is_archived"), Status.FAILED, None),
        (Reply.status(429, "rate_limited", retry_after="1"), Status.RETRY, 1.0),
        (Reply.status(500, "rollup_error"), Status.RETRY, None),
    ],
)
def test_slack_answers(tmp_path, monkeypatch, reply, status, wait):
    with HttpReceiver.start() as rx:
        rx.then(reply)
        sink = chat_sink(tmp_path, "slack", rx.url, monkeypatch)
        outcome = run(sink, Delivery.first(p1(), sink.name))
    assert (outcome.status, outcome.retry_after) == (status, wait)
    assert reply.body.decode() in outcome.said


def test_a_teams_connector_throttling_with_200_is_a_429(tmp_path, monkeypatch):
    with HttpReceiver.start() as rx:
        rx.then(Reply.status(200, "Microsoft Teams endpoint returned HTTP error 429 ..."))
        sink = chat_sink(tmp_path, "teams", rx.url, monkeypatch)
        outcome = run(sink, Delivery.first(p1(), sink.name))
    assert outcome.status is Status.RETRY and outcome.code == 429 and outcome.retry_after == 60


def test_the_webhook_url_never_appears_in_an_outcome(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}/services/T0/B0/s3cr3tt0ken"
    sink = chat_sink(tmp_path, "slack", url, monkeypatch)
    outcome = run(sink, Delivery.first(p1(), sink.name))
    assert outcome.status is Status.RETRY
    assert "s3cr3tt0ken" not in outcome.said


def test_an_unset_url_variable_holds_the_row(tmp_path, monkeypatch):
    sink = chat_sink(tmp_path, "teams", "x", monkeypatch)
    monkeypatch.delenv("CHAT_URL")
    outcome = run(sink, Delivery.first(p1(), sink.name))
    assert outcome.held and "CHAT_URL is not set" in outcome.said
