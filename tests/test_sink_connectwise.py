"""ConnectWise Manage against a local STAND-IN of its REST API (tests/support/connectwise_standin.py;
no real ConnectWise server is reachable here): the requests sent, the mapping, and exactly one
PSA ticket and one note per delivery even when an answer is lost."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime

import pytest

from tests.support.connectwise_standin import (
    CLIENT_ID,
    COMPANY_ID,
    LOSE,
    PASS,
    PRIVATE_KEY,
    PUBLIC_KEY,
    ConnectWiseStandIn,
)
from tests.support.http_receiver import Reply
from triage.sinks.base import Delivery, Status
from triage.sinks.config import parse_sink
from triage.sinks.connectwise import ConnectWiseSink
from triage.sinks.events import TICKET_APPENDED, TICKET_CREATED, Event

AT = datetime(2026, 3, 10, 4, 26, tzinfo=UTC)


def event(type: str = TICKET_CREATED, id: str = "evt_1", **over) -> Event:
    fields = dict(
        ticket="T-000123",
        subject="File server down",
        priority="P1",
        due=datetime(2026, 3, 10, 5, 26, tzinfo=UTC),
        requester="ceo@acme.example",
        requester_name="Dana Boss",
        company="Acme Corp",
        vip=True,
        reasons=["priority: 'down' in the subject → P1"],
        text="Nobody can open the shared drive since 04:00.",
    )
    fields.update(over)
    return Event.for_ticket(type, id, AT, **fields)


def sink_for(tmp_path, cw: ConnectWiseStandIn, monkeypatch, **extra) -> ConnectWiseSink:
    (tmp_path / "cw.key").write_text(PRIVATE_KEY + "\n")
    monkeypatch.setenv("CW_PUBLIC", PUBLIC_KEY)
    table = {
        "name": "psa",
        "kind": "connectwise",
        "site": cw.site,
        "allow_insecure": True,
        "company_id": COMPANY_ID,
        "public_key_env": "CW_PUBLIC",
        "private_key_file": "cw.key",
        "client_id": CLIENT_ID,
        "board": 1,
        "status": 11,
        "priority_map": {"P1": 8, "P2": 7, "P3": 6, "P4": 5},
        "company_map": {"Acme Corp": "AcmeCorp"},
        "default_company": "Catchall",
        "events": ["ticket.created", "ticket.appended"],
        "rate_limit": 100,
        **extra,
    }
    return ConnectWiseSink(parse_sink(tmp_path / "triage.toml", "sink[0]", table))


def run(sink: ConnectWiseSink, *deliveries: Delivery):
    async def go():
        try:
            return [await sink.deliver(d) for d in deliveries]
        finally:
            await sink.aclose()

    return asyncio.run(go())


def test_a_new_ticket_becomes_one_service_ticket_with_the_mapped_fields(tmp_path, monkeypatch):
    with ConnectWiseStandIn.start() as cw:
        sink = sink_for(tmp_path, cw, monkeypatch)
        [outcome] = run(sink, Delivery.first(event(), "psa"))
    assert outcome.status is Status.SENT and outcome.code == 201
    [(cw_id, made)] = cw.tickets.items()
    assert outcome.remote == str(cw_id)
    assert made["summary"] == "[T-000123] File server down"
    assert made["externalXRef"] == "T-000123"
    assert made["company"]["identifier"] == "AcmeCorp"
    assert made["board"] == {"id": 1} and made["status"] == {"id": 11}
    assert made["priority"] == {"id": 8}
    assert made["contactEmailAddress"] == "ceo@acme.example"
    assert made["contactName"] == "Dana Boss"
    [first] = cw.notes[cw_id]  # the initial description becomes the first note
    assert first["text"].startswith("Nobody can open the shared drive since 04:00.")
    assert "triage T-000123, P1, due 2026-03-10T05:26:00Z" in first["text"]
    # every request: Basic companyId+public:private, clientId, the API version
    lookup, create = cw.requests
    expected = base64.b64encode(f"{COMPANY_ID}+{PUBLIC_KEY}:{PRIVATE_KEY}".encode()).decode()
    for r in (lookup, create):
        assert r.headers["authorization"] == f"Basic {expected}"
        assert r.headers["clientid"] == CLIENT_ID
        assert r.headers["accept"] == "application/vnd.connectwise.com+json; version=2022.1"
    assert (lookup.method, lookup.path) == ("GET", "/v4_6_release/apis/3.0/service/tickets")
    assert lookup.query["conditions"] == ['externalXRef="T-000123"']
    assert (create.method, create.path) == ("POST", "/v4_6_release/apis/3.0/service/tickets")


def test_an_unknown_company_goes_to_the_default_and_an_unmapped_priority_is_left_out(
    tmp_path, monkeypatch
):
    with ConnectWiseStandIn.start() as cw:
        sink = sink_for(tmp_path, cw, monkeypatch)
        [outcome] = run(sink, Delivery.first(event(company="Initech", priority="P9"), "psa"))
    assert outcome.ok
    [made] = cw.tickets.values()
    assert made["company"]["identifier"] == "Catchall"
    assert "priority" not in made


def test_a_long_subject_is_cut_to_the_summarys_100_characters(tmp_path, monkeypatch):
    with ConnectWiseStandIn.start() as cw:
        sink = sink_for(tmp_path, cw, monkeypatch)
        [outcome] = run(sink, Delivery.first(event(subject="word " * 60), "psa"))
    assert outcome.ok
    [made] = cw.tickets.values()
    assert len(made["summary"]) == 100 and made["summary"].startswith("[T-000123] word")


def test_a_lost_answer_to_the_create_never_makes_a_second_ticket(tmp_path, monkeypatch):
    with ConnectWiseStandIn.start() as cw:
        cw.then(PASS, LOSE)  # the lookup finds none; the create's 201 is lost
        sink = sink_for(tmp_path, cw, monkeypatch)
        first = Delivery.first(event(), "psa")
        outcomes = run(sink, first, Delivery(first.id, "psa", first.event, attempt=2))
    assert [o.status for o in outcomes] == [Status.RETRY, Status.SENT]
    assert len(cw.tickets) == 1
    [cw_id] = cw.tickets
    assert outcomes[1].remote == str(cw_id) and "already carries T-000123" in outcomes[1].said


def test_an_appended_message_becomes_one_note_even_when_its_answer_is_lost(tmp_path, monkeypatch):
    with ConnectWiseStandIn.start() as cw:
        sink = sink_for(tmp_path, cw, monkeypatch)
        created = Delivery.first(event(), "psa")
        appended = Delivery.first(
            event(TICKET_APPENDED, "evt_2", text="Still down, please call me.", action="append"),
            "psa",
        )
        outcomes = run(sink, created)
        cw.then(PASS, PASS, LOSE)  # lookup, recent notes, then the note's 201 is lost
        outcomes += run(
            sink_for(tmp_path, cw, monkeypatch),
            appended,
            Delivery(appended.id, "psa", appended.event, attempt=2),
        )
    assert [o.status for o in outcomes] == [Status.SENT, Status.RETRY, Status.SENT]
    [cw_id] = cw.tickets
    description, note = cw.notes[cw_id]
    assert note["text"].startswith(
        "New message from ceo@acme.example:\n\nStill down, please call me."
    )
    assert note["text"].endswith(f"delivery {appended.id}")
    assert note["detailDescriptionFlag"] is True


def test_an_internal_note_type_files_notes_as_internal_analysis(tmp_path, monkeypatch):
    with ConnectWiseStandIn.start() as cw:
        sink = sink_for(tmp_path, cw, monkeypatch, note_type="internal")
        run(
            sink,
            Delivery.first(event(), "psa"),
            Delivery.first(event(TICKET_APPENDED, "evt_2"), "psa"),
        )
    [notes] = cw.notes.values()
    assert notes[-1]["internalAnalysisFlag"] is True and "detailDescriptionFlag" not in notes[-1]


def test_a_note_before_its_ticket_waits(tmp_path, monkeypatch):
    with ConnectWiseStandIn.start() as cw:
        sink = sink_for(tmp_path, cw, monkeypatch)
        [outcome] = run(sink, Delivery.first(event(TICKET_APPENDED, "evt_2"), "psa"))
    assert (
        outcome.status is Status.RETRY and "no ConnectWise ticket carries T-000123" in outcome.said
    )
    assert cw.tickets == {}


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"private_key_file": "other.key"}, Status.RETRY, "No such file"),  # held: ours
        ({"client_id": "someone-else"}, Status.FAILED, "clientId"),
        ({"board": 99}, Status.FAILED, "board 99 not found"),
        ({"status": 71}, Status.FAILED, "status 71 is not a status of board 1"),
        ({"default_company": "Nobody", "company_map": {}}, Status.FAILED, "company"),
    ],
)
def test_configuration_the_server_refuses_fails_with_its_answer(
    tmp_path, monkeypatch, change, status, words
):
    with ConnectWiseStandIn.start() as cw:
        sink = sink_for(tmp_path, cw, monkeypatch, **change)
        [outcome] = run(sink, Delivery.first(event(), "psa"))
    assert outcome.status is status and words in outcome.said
    assert cw.tickets == {}


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (Reply.status(500, "Server Error"), Status.RETRY),
        (Reply.status(429, "slow", retry_after="3"), Status.RETRY),
        (Reply.close(), Status.RETRY),
        (Reply.status(503), Status.RETRY),
    ],
)
def test_an_outage_during_the_lookup_means_retry_and_creates_nothing(
    tmp_path, monkeypatch, reply, status
):
    with ConnectWiseStandIn.start() as cw:
        cw.then(reply)
        sink = sink_for(tmp_path, cw, monkeypatch)
        [outcome] = run(sink, Delivery.first(event(), "psa"))
    assert outcome.status is status and cw.tickets == {}


def test_the_configured_api_version_and_codebase_are_what_is_sent(tmp_path, monkeypatch):
    with ConnectWiseStandIn.start() as cw:
        sink = sink_for(tmp_path, cw, monkeypatch, api_version="2024.1", codebase="v4_6_release")
        [outcome] = run(sink, Delivery.first(event(), "psa"))
    assert outcome.ok
    assert {r.headers["accept"] for r in cw.requests} == {
        "application/vnd.connectwise.com+json; version=2024.1"
    }
    with ConnectWiseStandIn.start() as cw:
        sink = sink_for(tmp_path, cw, monkeypatch, codebase="v2025_1")
        [outcome] = run(sink, Delivery.first(event(), "psa"))
    assert outcome.status is Status.FAILED and cw.requests[0].path.startswith("/v2025_1/apis/3.0/")
