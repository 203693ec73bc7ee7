"""The Graph source against the Graph stand-in (tests/support/graph_standin.py).

The stand-in is not Microsoft Graph: it answers as Microsoft's documentation shows. These
tests assert what ends up where: the bytes committed, the folder a message is in, its
category or read mark, the error an operator is shown.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

from tests.support.daemon import REPO
from tests.support.graph_drain import (
    CLIENT_ID,
    SECRET,
    UPN,
    Crash,
    Ledger,
    credentials,
    drain,
    mailbox,
    standard,
)
from tests.support.graph_standin import GraphStandIn, generated
from triage.config.endpoints import Secret
from triage.sources.graph import GraphSession
from triage.sources.graph_auth import GraphError
from triage.sources.graph_http import Retries


@pytest.fixture
def graph(tmp_path):
    with GraphStandIn.start(tmp_path) as g:
        standard(g)
        yield g


def run(coro):
    return asyncio.run(coro)


async def _with(mb, body):
    session = GraphSession(mb)
    try:
        await session.open()
        return await body(session)
    finally:
        await session.close()


def test_every_message_is_committed_once_and_moved_with_its_bytes(graph):
    raws = [generated("a", n, 700) for n in range(25)]
    graph.deliver(UPN, "inbox", *raws)
    ledger = Ledger()

    async def body(s):
        await drain(s, ledger)
        return await drain(s, ledger)  # from the deltaLink: nothing new

    assert run(_with(mailbox(graph, batch=10), body)) == 0
    assert sorted(ledger.rows.values()) == sorted(raws)
    assert ledger.repeats == 0
    assert graph.folder(UPN, "inbox")["messages"] == []
    moved = graph.folder(UPN, "Triage/Processed", raw=True)["messages"]
    assert sorted(m["internetMessageId"] for m in moved) == sorted(
        f"<a-{n}@example.org>" for n in range(25)
    )
    assert graph.folder(UPN, "Triage/Processed")["parent"] == "Triage"


def test_folders_are_created_once_under_their_parent(graph):
    run(_with(mailbox(graph), lambda s: asyncio.sleep(0)))
    run(_with(mailbox(graph), lambda s: asyncio.sleep(0)))  # found, not made twice
    for name in ("Processed", "Filtered", "Review", "Errors"):
        found = graph.folder(UPN, f"Triage/{name}")
        assert found["exists"] and found["parent"] == "Triage"
    top = graph.http.get("/_standin/folder", params={"upn": UPN, "folder": "Triage"}).json()
    assert top["exists"] and top["parent"] is None


def test_a_folder_under_a_well_known_one_and_a_watched_path(graph):
    graph.deliver(UPN, "Inbox/Support", generated("p", 1, 500))
    mb = mailbox(graph, folder="Inbox/Support", processed_folder="Inbox/Done")
    ledger = Ledger()
    run(_with(mb, lambda s: drain(s, ledger)))
    assert graph.message_ids(UPN, "Inbox/Done") == ["<p-1@example.org>"]
    assert graph.folder(UPN, "Inbox/Done")["parent"] == "Inbox"


def test_new_mail_is_found_from_the_stored_delta_link(graph):
    graph.deliver(UPN, "inbox", generated("old", 1, 500))
    ledger = Ledger()
    run(_with(mailbox(graph), lambda s: drain(s, ledger)))
    graph.deliver(UPN, "inbox", generated("new", 1, 500), generated("new", 2, 500))
    first = ledger.link
    run(_with(mailbox(graph), lambda s: drain(s, ledger)))  # a new session, the stored link
    assert sorted(ledger.rows) == [
        "<new-1@example.org>",
        "<new-2@example.org>",
        "<old-1@example.org>",
    ]
    assert ledger.repeats == 0 and ledger.link != first
    assert "gone_410" not in graph.stats()  # found from the link, not by a resync


def test_a_crash_before_the_acknowledgement_loses_and_doubles_nothing(graph):
    graph.deliver(UPN, "inbox", *[generated("c", n, 500) for n in range(30)])
    ledger = Ledger()
    with pytest.raises(Crash):
        run(_with(mailbox(graph, batch=10), lambda s: drain(s, ledger, crash_after_pages=1)))
    # page 1 was filed, page 2 committed but not filed: the stored link is after page 1
    assert len(graph.message_ids(UPN, "Triage/Processed")) == 10
    run(_with(mailbox(graph, batch=10), lambda s: drain(s, ledger)))
    assert sorted(ledger.rows) == sorted(f"<c-{n}@example.org>" for n in range(30))
    assert ledger.repeats == 10  # page 2 came again: the message key made it a no-op
    assert len(graph.message_ids(UPN, "Triage/Processed")) == 30
    assert graph.message_ids(UPN, "inbox") == []
    assert "gone_410" not in graph.stats()  # resumed from the stored nextLink


@pytest.mark.parametrize("after", ["move", "read", "category"])
def test_an_expired_delta_token_resyncs_the_folder_without_loss_or_doubles(graph, after):
    graph.deliver(UPN, "inbox", *[generated("r", n, 500) for n in range(12)])
    ledger = Ledger()
    run(_with(mailbox(graph, after=after, batch=5), lambda s: drain(s, ledger)))
    graph.deliver(UPN, "inbox", *[generated("late", n, 500) for n in range(3)])
    graph.set(expire_delta=UPN)  # Graph forgets every state token of this mailbox: 410

    async def body(s):
        await drain(s, ledger)
        return s.resyncs

    assert run(_with(mailbox(graph, after=after, batch=5), body)) == 1
    assert graph.stats()["gone_410"] == 1
    assert len(ledger.rows) == 15
    # move: the folder held only the 3 new ones; category: the filed 12 carry the category
    # and are skipped; read: the 12 are listed again and recognised by their key.
    assert ledger.repeats == {"move": 0, "read": 12, "category": 0}[after]
    inbox = graph.folder(UPN, "inbox")["messages"]
    if after == "move":
        assert inbox == [] and len(graph.message_ids(UPN, "Triage/Processed")) == 15
    elif after == "read":
        assert len(inbox) == 15 and all(m["isRead"] for m in inbox)
    else:
        assert len(inbox) == 15 and all(m["categories"] == ["Triaged"] for m in inbox)


def test_the_category_is_added_to_those_a_message_has(graph):
    [mid] = graph.deliver(UPN, "inbox", generated("k", 1, 500))
    # a person gave it a category first, through Graph as any client would
    token = graph.http.post(
        f"/{graph.tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "scope": "https://graph.microsoft.com/.default",
        },
    ).json()["access_token"]
    graph.http.patch(
        f"/v1.0/users/{UPN}/messages/{mid}",
        json={"categories": ["Blue category"]},
        headers={"Authorization": f"Bearer {token}"},
    ).raise_for_status()
    run(_with(mailbox(graph, after="category"), lambda s: drain(s, Ledger())))
    [m] = graph.folder(UPN, "inbox")["messages"]
    assert m["categories"] == ["Blue category", "Triaged"] and not m["isRead"]


def test_a_message_over_the_size_limit_is_not_downloaded(graph):
    graph.deliver(UPN, "inbox", generated("big", 1, 50_000), generated("small", 1, 500))

    async def body(s):
        async for page in s.changes(None):
            fetched, _ = await s.fetch(list(page.ids), 10_000)
            return sorted((f.size, f.raw is None) for f in fetched)

    sizes = run(_with(mailbox(graph), body))
    assert sizes[0][1] is False and sizes[1][1] is True
    assert sizes[1][0] >= 50_000 - 100  # the size Graph declared, for the quarantine record


def test_a_message_moved_away_by_a_person_is_left_out(graph):
    [gone, kept] = graph.deliver(UPN, "inbox", generated("g", 1, 500), generated("g", 2, 500))

    async def body(s):
        async for page in s.changes(None):
            # someone files the first one by hand between the listing and the fetch
            await s.client.request(
                "POST", f"users/{UPN}/messages/{gone}/move", json={"destinationId": "archive"}
            )
            fetched, _ = await s.fetch(list(page.ids), 10**6)
            await s.ack([gone, kept], "processed")  # the gone one: 404, not an error
            return [f.id for f in fetched]

    assert run(_with(mailbox(graph), body)) == [kept]
    assert graph.message_ids(UPN, "Triage/Processed") == ["<g-2@example.org>"]
    assert graph.message_ids(UPN, "archive") == ["<g-1@example.org>"]


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        ({"secret_expired": True}, "AADSTS7000222"),
        ({"secret": "another"}, "AADSTS7000215"),
        ({"disabled": True}, "AADSTS7000112"),
    ],
)
def test_a_refused_grant_raises_auth_at_once_with_microsofts_reason(graph, setup, code):
    graph.add_app(CLIENT_ID, **setup)
    started = time.monotonic()
    with pytest.raises(GraphError) as caught:
        run(_with(mailbox(graph), lambda s: asyncio.sleep(0)))
    assert caught.value.kind == "auth"
    assert code in str(caught.value) and caught.value.code == code.removeprefix("AADSTS")
    assert "Trace ID" not in str(caught.value)  # the reason, not the trace lines
    assert time.monotonic() - started < 5
    assert graph.stats()["token_requests"] == 1  # asked once, not retried in a loop


def test_an_unknown_tenant_and_an_unknown_app_say_so(graph):
    creds = credentials(graph)
    wrong_tenant = mailbox(
        graph,
        credentials=type(creds)(
            "00000000-0000-0000-0000-000000000000",
            CLIENT_ID,
            creds.secret,
            authority_host=graph.url,
            ca_file=str(graph.ca_file),
        ),
    )
    with pytest.raises(GraphError) as caught:
        run(_with(wrong_tenant, lambda s: asyncio.sleep(0)))
    assert caught.value.kind == "auth" and "AADSTS90002" in str(caught.value)
    with pytest.raises(GraphError) as caught:
        run(
            _with(
                mailbox(graph, credentials=credentials(graph, client_id="nope")),
                lambda s: asyncio.sleep(0),
            )
        )
    assert caught.value.kind == "auth" and "AADSTS700016" in str(caught.value)


def test_an_unreadable_secret_is_a_secret_failure(graph):
    mb = mailbox(graph, credentials=credentials(graph, secret=Secret("env", "TRIAGE_NO_SUCH_VAR")))
    with pytest.raises(GraphError) as caught:
        run(_with(mb, lambda s: asyncio.sleep(0)))
    assert caught.value.kind == "secret" and "TRIAGE_NO_SUCH_VAR" in str(caught.value)


def test_the_token_is_renewed_before_it_expires(graph):
    graph.set(token_lifetime=302)  # msal renews a token with under 5 minutes left
    graph.deliver(UPN, "inbox", generated("t", 1, 500))

    async def body(s):
        await asyncio.sleep(2.5)  # now under 300 s are left: the next request renews first
        return await drain(s, Ledger())

    assert run(_with(mailbox(graph), body)) == 1
    stats = graph.stats()
    assert stats["tokens_issued"] == 2


def test_a_token_graph_refuses_early_is_replaced_once(graph):
    graph.deliver(UPN, "inbox", generated("x", 1, 500))

    async def body(s):
        graph.set(expire_tokens=True)  # revoked, or a clock apart: msal still trusts it
        return await drain(s, Ledger())

    assert run(_with(mailbox(graph), body)) == 1
    assert graph.stats()["tokens_issued"] == 2


def test_429_and_503_wait_as_retry_after_says(graph):
    graph.deliver(UPN, "inbox", generated("w", 1, 500))
    graph.fault("429", count=2, match="/$value", retry_after=1.5)
    graph.fault("503", count=1, match="/move", retry_after=1)
    ledger = Ledger()

    async def body(s):
        started = time.monotonic()
        await drain(s, ledger)
        return time.monotonic() - started, s.client.waited

    elapsed, waited = run(_with(mailbox(graph), body))
    assert waited == pytest.approx(4.0)  # 1.5 + 1.5 + 1, as told
    assert elapsed >= 4.0
    assert list(ledger.rows) == ["<w-1@example.org>"]
    assert graph.message_ids(UPN, "Triage/Processed") == ["<w-1@example.org>"]


def test_throttling_past_the_budget_is_reported_as_throttled(graph):
    graph.deliver(UPN, "inbox", generated("b", 1, 500))
    graph.fault("429", count=50, match="/delta", retry_after=30)
    mb = mailbox(graph, retries=Retries(attempts=8, budget=10.0))
    started = time.monotonic()
    with pytest.raises(GraphError) as caught:
        run(_with(mb, lambda s: drain(s, Ledger())))
    assert caught.value.kind == "throttled" and "30" in str(caught.value)
    assert time.monotonic() - started < 5  # did not sleep 30 s it was not going to use


def test_dropped_connections_are_ridden_out(graph):
    graph.deliver(UPN, "inbox", *[generated("d", n, 500) for n in range(3)])
    graph.fault("drop", count=2, match="/$value")
    graph.fault("drop", count=1, match="/delta")
    ledger = Ledger()
    run(_with(mailbox(graph, retries=Retries(backoff=0.05)), lambda s: drain(s, ledger)))
    assert len(ledger.rows) == 3 and ledger.repeats == 0
    assert len(graph.message_ids(UPN, "Triage/Processed")) == 3


def test_no_more_than_four_requests_in_flight(graph):
    graph.deliver(UPN, "inbox", *[generated("q", n, 500) for n in range(40)])
    run(_with(mailbox(graph, batch=40), lambda s: drain(s, Ledger())))
    stats = graph.stats()
    assert stats["max_in_flight"] <= 4 and "concurrency_429" not in stats


def test_a_missing_watched_folder_is_a_config_error_naming_the_key(graph):
    with pytest.raises(GraphError) as caught:
        run(_with(mailbox(graph, folder="Inbox/Nowhere"), lambda s: asyncio.sleep(0)))
    assert caught.value.kind == "config"
    assert "'Inbox/Nowhere' (folder)" in str(caught.value) and "fix:" in str(caught.value)


def test_an_app_scoped_to_other_mailboxes_is_refused_as_config(graph):
    graph.add_mailbox("ceo@contoso.example")
    graph.add_app(CLIENT_ID, mailboxes=["support@contoso.example"])
    with pytest.raises(GraphError) as caught:
        run(_with(mailbox(graph, user="ceo@contoso.example"), lambda s: asyncio.sleep(0)))
    assert caught.value.kind == "config" and "ErrorAccessDenied" in str(caught.value)


def test_a_backlog_of_50000_is_drained_in_bounded_memory(graph):
    """50,000 messages of 4 KB (200 MB) drained by a process whose peak memory grows by a
    small bound: one page of ids and one batch of bodies at a time, never the backlog."""
    graph.generate(UPN, "inbox", 50_000, size=4096)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.support.graph_drain",
            "--url",
            graph.url,
            "--ca-file",
            str(graph.ca_file),
            "--tenant",
            graph.tenant,
            "--after",
            "move",
            "--batch",
            "500",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "TRIAGE_TEST_GRAPH_SECRET": SECRET},
        capture_output=True,
        text=True,
        timeout=1200,
        check=True,
    )
    cost = json.loads(done.stdout.splitlines()[-1])
    assert cost["messages"] == 50_000 and cost["repeats"] == 0
    assert cost["bytes"] > 200_000_000
    grown = (cost["peak_kib"] - cost["base_kib"]) * 1024
    assert grown < 64 * 1024 * 1024, f"peak memory grew by {grown / 1e6:.0f} MB"
    assert graph.message_ids(UPN, "inbox") == []
    assert len(graph.folder(UPN, "Triage/Processed")["messages"]) == 50_000


def test_a_stored_link_to_another_host_is_not_followed(graph):
    """The token goes with every request: a link that is not on the Graph host is dropped and
    the folder listed again, never requested."""
    graph.deliver(UPN, "inbox", generated("h", 1, 500))
    ledger = Ledger(
        link="https://attacker.example/v1.0/users/x/mailFolders/y/messages/delta?$deltatoken=z"
    )

    async def body(s):
        await drain(s, ledger)
        return s.resyncs

    assert run(_with(mailbox(graph), body)) == 1
    assert list(ledger.rows) == ["<h-1@example.org>"]
