"""Change notifications: the subscription, the validation handshake, lifecycle events, the hint.

Against the Graph stand-in, which validates the endpoint and posts notifications as
Microsoft's documentation shows. A notification is only a hint: the delta query finds mail.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.support.graph_drain import UPN, Ledger, drain, mailbox, standard
from tests.support.graph_standin import GraphStandIn, generated
from tests.support.net import free_port
from triage.sources.graph import GraphSession
from triage.sources.graph_notify import Notices, Notifications, read_notices

KNOWN = {"sub-1": "our-state"}


@pytest.mark.parametrize(
    ("body", "notices"),
    [
        (
            {
                "value": [
                    {"subscriptionId": "sub-1", "clientState": "our-state", "changeType": "created"}
                ]
            },
            Notices(hint=True),
        ),
        ({"value": [{"subscriptionId": "sub-1", "clientState": "forged"}]}, Notices(rejected=1)),
        ({"value": [{"subscriptionId": "sub-2", "clientState": "our-state"}]}, Notices(rejected=1)),
        (
            {
                "value": [
                    {
                        "subscriptionId": "sub-1",
                        "clientState": "our-state",
                        "lifecycleEvent": "missed",
                    }
                ]
            },
            Notices(hint=True),
        ),
        (
            {
                "value": [
                    {
                        "subscriptionId": "sub-1",
                        "clientState": "our-state",
                        "lifecycleEvent": "reauthorizationRequired",
                    }
                ]
            },
            Notices(renew=frozenset({"sub-1"})),
        ),
        (
            {
                "value": [
                    {
                        "subscriptionId": "sub-1",
                        "clientState": "our-state",
                        "lifecycleEvent": "subscriptionRemoved",
                    }
                ]
            },
            Notices(hint=True, recreate=frozenset({"sub-1"})),
        ),
        ({"value": "nonsense"}, Notices(rejected=1)),
    ],
)
def test_what_a_post_from_graph_asks_for(body, notices):
    assert read_notices(json.dumps(body).encode(), KNOWN) == notices


def test_a_body_that_is_not_json_is_rejected():
    assert read_notices(b"<html>", KNOWN) == Notices(rejected=1)


@pytest.fixture
def graph(tmp_path):
    with GraphStandIn.start(tmp_path) as g:
        standard(g)
        yield g


def _notifications(session: GraphSession) -> Notifications:
    port = free_port()
    assert session.opened is not None
    return Notifications(
        session.client,
        UPN,
        session.opened.folder_id,
        f"http://127.0.0.1:{port}/graph/notify",
        f"127.0.0.1:{port}",
        session.hint,
    )


async def _eventually(check, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not within the time limit"
        await asyncio.sleep(0.05)


def test_a_notification_wakes_the_wait_and_the_delta_query_finds_the_mail(graph):
    async def body():
        session = GraphSession(mailbox(graph, poll_seconds=60))
        await session.open()
        notes = _notifications(session)
        await notes.start()
        try:
            await notes.maintain(datetime.now(UTC))  # Graph validated our endpoint first
            [sub] = graph.subscriptions()
            assert sub["id"] == notes.subscription.id and sub["changeType"] == "created"
            ledger = Ledger()
            await drain(session, ledger)
            stop = asyncio.Event()
            waiting = asyncio.ensure_future(session.wait(stop))
            await asyncio.sleep(0.2)
            graph.deliver(UPN, "inbox", generated("n", 1, 500))
            started = asyncio.get_running_loop().time()
            assert await asyncio.wait_for(waiting, 10) is True
            assert asyncio.get_running_loop().time() - started < 5  # not the 60 s poll
            await drain(session, ledger)
            return list(ledger.rows)
        finally:
            await notes.stop()
            await session.close()

    assert asyncio.run(body()) == ["<n-1@example.org>"]
    assert graph.subscriptions() == []  # stop() deleted it


def test_a_lost_notification_only_delays_until_the_poll(graph):
    async def body():
        session = GraphSession(mailbox(graph, poll_seconds=1.0))
        await session.open()
        notes = _notifications(session)
        await notes.start()
        try:
            await notes.maintain(datetime.now(UTC))
            ledger = Ledger()
            await drain(session, ledger)
            graph.set(drop_notifications=1)
            graph.deliver(UPN, "inbox", generated("lost", 1, 500))
            assert await session.wait(asyncio.Event()) is True  # the poll interval
            await drain(session, ledger)
            return list(ledger.rows)
        finally:
            await notes.stop()
            await session.close()

    assert asyncio.run(body()) == ["<lost-1@example.org>"]
    assert graph.stats()["notifications_dropped"] == 1


def test_renewed_when_half_its_life_is_gone_and_made_again_when_removed(graph):
    async def body():
        session = GraphSession(mailbox(graph))
        await session.open()
        notes = _notifications(session)
        await notes.start()
        try:
            now = datetime.now(UTC)
            await notes.maintain(now)
            first = notes.subscription.id
            wait = await notes.maintain(now + timedelta(hours=1))  # young: left alone
            assert notes.renewals == 0 and wait > 3600
            later = now + notes.lifetime * 0.6  # past half its life: renewed
            await notes.maintain(later)
            assert notes.renewals == 1 and notes.subscription.id == first
            [sub] = graph.subscriptions()
            granted = datetime.fromisoformat(sub["expirationDateTime"])
            assert abs(granted - (later + notes.lifetime)) < timedelta(seconds=2)
            # Graph removes it (lifecycle event): a new one is made, and mail is looked for
            assert graph.lifecycle(first, "subscriptionRemoved")
            await _eventually(lambda: notes.subscription is None)
            assert session.hint.is_set()
            await notes.maintain(datetime.now(UTC))
            [again] = graph.subscriptions()
            assert again["id"] != first and notes.subscription.id == again["id"]
            # reauthorizationRequired: renewed at once
            assert graph.lifecycle(again["id"], "reauthorizationRequired")
            await _eventually(lambda: notes.subscription.expires <= datetime.now(UTC))
            await notes.maintain(datetime.now(UTC))
            return notes.renewals
        finally:
            await notes.stop()
            await session.close()

    assert asyncio.run(body()) == 2


def test_a_renewal_graph_no_longer_knows_subscribes_again(graph):
    async def body():
        session = GraphSession(mailbox(graph))
        await session.open()
        notes = _notifications(session)
        await notes.start()
        try:
            now = datetime.now(UTC)
            await notes.maintain(now)
            first = notes.subscription.id
            await session.client.request("DELETE", f"subscriptions/{first}", ok=(204,))
            await notes.maintain(now + notes.lifetime * 0.6)  # renew: 404, so subscribe again
            [sub] = graph.subscriptions()
            return first, sub["id"], session.hint.is_set()
        finally:
            await notes.stop()
            await session.close()

    first, now_id, hinted = asyncio.run(body())
    assert now_id != first and hinted


def test_a_forged_notification_is_ignored(graph):
    async def body():
        session = GraphSession(mailbox(graph))
        await session.open()
        notes = _notifications(session)
        await notes.start()
        try:
            await notes.maintain(datetime.now(UTC))
            forged = {"value": [{"subscriptionId": notes.subscription.id, "clientState": "guess"}]}
            async with httpx.AsyncClient() as client:
                answer = await client.post(notes.public_url, json=forged)
            return answer.status_code, notes.rejected, session.hint.is_set()
        finally:
            await notes.stop()
            await session.close()

    assert asyncio.run(body()) == (202, 1, False)


def test_the_validation_token_is_echoed_as_plain_text(graph):
    async def body():
        session = GraphSession(mailbox(graph))
        await session.open()
        notes = _notifications(session)
        await notes.start()
        try:
            token = "Validation: Testing client application reachability <script>"
            async with httpx.AsyncClient() as client:
                answer = await client.post(notes.public_url, params={"validationToken": token})
            return answer.status_code, answer.headers["content-type"], answer.text
        finally:
            await notes.stop()
            await session.close()

    status, kind, text = asyncio.run(body())
    assert status == 200 and kind.startswith("text/plain")
    assert text == "Validation: Testing client application reachability <script>"


def test_a_notify_url_graph_cannot_validate_is_logged_once_and_polling_goes_on(graph):
    """A subscription that fails (here: nothing answers Graph's validation at the public
    URL) is said in the log, once for the same reason, not left silent."""
    from structlog.testing import capture_logs

    from triage import log

    async def body():
        session = GraphSession(mailbox(graph))
        await session.open()
        port = free_port()
        assert session.opened is not None
        notes = Notifications(
            session.client,
            UPN,
            session.opened.folder_id,
            f"http://127.0.0.1:{free_port()}/graph/notify",  # not where it listens
            f"127.0.0.1:{port}",
            session.hint,
        )
        await notes.start()
        stop = asyncio.Event()
        keeper = asyncio.create_task(notes.keep(stop))
        try:
            await _eventually(lambda: notes.last_error is not None)
            notes._wake.set()  # a second attempt, for the same reason
            await asyncio.sleep(0.5)
        finally:
            stop.set()
            await keeper
            await notes.stop()
            await session.close()
        return notes.subscription

    log.get()  # configure structlog first, so capture_logs is not undone
    with capture_logs() as logs:
        subscription = asyncio.run(body())
    assert subscription is None and graph.subscriptions() == []
    failed = [e for e in logs if e["event"] == "notify_subscription_failed"]
    assert len(failed) == 1, logs
    assert "validation" in failed[0]["error"].lower()
