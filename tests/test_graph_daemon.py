"""`triage run` on a Microsoft Graph mailbox, against the Graph STAND-IN.

The stand-in (tests/support/graph_standin.py) is not Microsoft Graph: it answers as
Microsoft's documentation shows. These tests assert outcomes: the tickets and their message
keys, the folder each message ends in, the state `triage status` shows, the bytes handed to
sendMail.
"""

from __future__ import annotations

import email.parser
import email.policy
import json

import pytest

from tests.support.daemon import Daemon, killed_after, toml_lines, wait_for
from tests.support.graph_drain import CLIENT_ID, SECRET, UPN, standard
from tests.support.graph_standin import GraphStandIn

from .conftest import human, rules_with_slow_rule

TO = {"To": UPN}


@pytest.fixture
def graph(tmp_path):
    with GraphStandIn.start(tmp_path / "standin") as g:
        standard(g)
        yield g


def graph_table(g: GraphStandIn, tmp, **keys: object) -> str:
    """A `[[mailbox]] kind = "graph"` table on the stand-in, its secret in a file."""
    secret = tmp / "graph-secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    table = {
        "name": "support",
        "kind": "graph",
        "tenant_id": g.tenant,
        "client_id": CLIENT_ID,
        "client_secret_file": str(secret),
        "user": UPN,
        "authority_host": g.url,
        "graph_url": g.url + "/v1.0",
        "ca_file": str(g.ca_file),
        "poll_seconds": 1,
        "timeout": 5,
        **keys,
    }
    return f"[[mailbox]]\n{toml_lines(table)}\n"


@pytest.fixture
def daemon(tmp_path, graph):
    def build(mailbox: dict | None = None, extra: str = "", **options) -> Daemon:
        text = graph_table(graph, tmp_path, **(mailbox or {})) + extra
        return Daemon(tmp_path / "d", None, extra=text, **options)

    with killed_after(build) as make:
        yield make


def count(g: GraphStandIn, folder: str) -> int:
    return len(g.message_ids(UPN, folder))


def test_run_files_every_message_once_and_moves_it(graph, daemon):
    graph.deliver(
        UPN,
        "inbox",
        *[human(Message_ID=f"<g{n}@x>", Subject=f"request {n}", **TO) for n in range(12)],
    )
    d = daemon().start()
    wait_for(lambda: count(graph, "inbox") == 0, 60, "the inbox to empty")
    wait_for(lambda: d.scalar("SELECT delta_link FROM mailbox_state"), 10, "the ledger")
    # mail arriving later is found at the next poll, from the stored link
    graph.deliver(UPN, "inbox", human(Message_ID="<late@x>", Subject="later", **TO))
    wait_for(lambda: count(graph, "inbox") == 0, 30, "the late message")
    assert d.stop() == 0
    assert d.query("SELECT COUNT(*), COUNT(DISTINCT message_key) FROM tickets")[0] == (13, 13)
    assert sorted(graph.message_ids(UPN, "Triage/Processed")) == sorted(
        [f"<g{n}@x>" for n in range(12)] + ["<late@x>"]
    )
    sources = [s for (s,) in d.query("SELECT source FROM messages")]
    assert all(s.startswith("graph:support/") for s in sources)
    (link,) = d.query("SELECT delta_link FROM mailbox_state WHERE mailbox = 'support'")[0]
    assert "$deltatoken=" in link  # the end-of-round link, not the first page's


def test_sigkill_mid_run_then_restart_gives_each_message_exactly_once(graph, daemon):
    graph.deliver(
        UPN,
        "inbox",
        *[human(Message_ID=f"<k{n}@x>", Subject=f"request {n}", **TO) for n in range(120)],
    )
    d = daemon(mailbox={"batch": 10}).start()
    wait_for(lambda: d.scalar("SELECT COUNT(*) FROM tickets") >= 20, 60, "some tickets")
    d.kill()
    d.start()
    wait_for(lambda: len(d.logged("mailbox_connected")) >= 2, 30, "the second run")
    wait_for(lambda: count(graph, "inbox") == 0, 90, "the inbox to empty")
    assert d.stop() == 0
    assert d.query("SELECT COUNT(*), COUNT(DISTINCT message_key) FROM tickets")[0] == (120, 120)
    assert count(graph, "Triage/Processed") == 120


def test_a_poison_message_is_quarantined_and_the_rest_go_on(graph, daemon, tmp_path):
    rules = rules_with_slow_rule(tmp_path)
    graph.deliver(
        UPN,
        "inbox",
        human(Message_ID="<ok1@x>", Subject="fine", **TO),
        human(Message_ID="<poison@x>", Subject="a" * 40 + "!", **TO),
        human(Message_ID="<ok2@x>", Subject="also fine", **TO),
    )
    d = daemon(daemon={"message_timeout": 1}, extra=f'[rules]\ndir = "{rules}"\n').start()
    wait_for(lambda: count(graph, "inbox") == 0, 60, "the inbox to empty")
    assert d.stop() == 0
    assert graph.message_ids(UPN, "Triage/Errors") == ["<poison@x>"]
    assert count(graph, "Triage/Processed") == 2
    assert d.query("SELECT reason FROM messages WHERE action = 'quarantined'") == [("timeout",)]


def test_a_refused_secret_fails_the_mailbox_with_microsofts_reason(graph, daemon):
    graph.add_app(CLIENT_ID, secret_expired=True)
    graph.deliver(UPN, "inbox", human(**TO))
    d = daemon().start()
    wait_for(lambda: d.logged("mailbox_failing"), 30, "mailbox_failing")
    out = d.cli("status", "--json", codes=(2,))
    (box,) = json.loads(out.stdout)["mailboxes"]
    assert box["failing"] and "AADSTS7000222" in box["last_error"], box
    assert d.logged("mailbox_failing")[0]["kind"] == "auth"
    table = d.cli("status", codes=(2,)).stdout  # the human table: the reason, not the app id
    assert "FAILING" in table and "AADSTS7000222" in table, table
    assert count(graph, "inbox") == 1  # nothing taken while failing
    # the secret renewed: it recovers on its own and files the mail
    graph.add_app(CLIENT_ID, secret_expired=False)
    wait_for(lambda: count(graph, "inbox") == 0, 60, "the recovery")
    assert d.stop() == 0
    assert d.logged("mailbox_recovered")


def test_acknowledgements_go_out_through_sendmail(graph, daemon):
    graph.deliver(UPN, "inbox", human(Message_ID="<ask@acme.example>", **TO))
    identity = (
        '[identity]\ndomains = ["contoso.example"]\n'
        f'support_address = "{UPN}"\n'
        '[smtp]\nkind = "graph"\nmailbox = "support"\n'
    )
    d = daemon(extra=identity, daemon={"outbox_seconds": 1}).start()
    wait_for(lambda: graph.sent(UPN), 60, "an acknowledgement through sendMail")
    assert d.stop() == 0
    (raw,) = graph.sent(UPN)
    head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    assert head["To"] == "jane@acme.example" or "jane@acme.example" in head["To"]
    assert head["In-Reply-To"] == "<ask@acme.example>"
    assert head["Auto-Submitted"] == "auto-replied"
    assert UPN in head["From"]
    assert d.query("SELECT status FROM outbox") == [("sent",)]


def test_an_email_sink_alerts_on_call_through_sendmail_too(graph, daemon):
    """With `[smtp] kind = "graph"` there is no relay: an on-call `[[sink]] kind = "email"`
    sends through sendMail like the acknowledgements, not never."""
    graph.deliver(UPN, "inbox", human(Message_ID="<p1@acme.example>", Subject="URGENT down", **TO))
    extra = (
        '[identity]\ndomains = ["contoso.example"]\n'
        f'support_address = "{UPN}"\n'
        '[smtp]\nkind = "graph"\nmailbox = "support"\n'
        '[[sink]]\nname = "oncall"\nkind = "email"\nto = ["oncall@contoso.example"]\n'
        'events = ["ticket.created"]\n'
    )
    d = daemon(extra=extra, daemon={"outbox_seconds": 1}).start()
    wait_for(lambda: len(graph.sent(UPN)) >= 2, 60, "the acknowledgement and the alert")
    assert d.stop() == 0
    heads = [
        email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
        for raw in graph.sent(UPN)
    ]
    alert = next(h for h in heads if "oncall@contoso.example" in (h["To"] or ""))
    assert "T-000001" in alert["Subject"]
    assert d.query("SELECT status FROM deliveries") == [("sent",)]


def test_a_changed_folder_is_read_from_its_start_not_from_the_old_link(graph, daemon):
    graph.deliver(UPN, "inbox", human(Message_ID="<in@x>", **TO))
    graph.deliver(UPN, "Inbox/Support", human(Message_ID="<s1@x>", Subject="one", **TO))
    d = daemon().start()
    wait_for(lambda: count(graph, "inbox") == 0, 60, "the inbox to empty")
    assert d.stop() == 0
    # the operator points the mailbox at another folder: its mail is not skipped
    d.config.write_text(
        d.config.read_text().replace(
            "poll_seconds = 1", 'poll_seconds = 1\nfolder = "Inbox/Support"'
        )
    )
    d.start()
    wait_for(lambda: count(graph, "Inbox/Support") == 0, 60, "the other folder to empty")
    assert d.stop() == 0
    assert sorted(graph.message_ids(UPN, "Triage/Processed")) == ["<in@x>", "<s1@x>"]


def test_the_metrics_endpoint_shows_ingest_latency_and_the_app_tokens_time_left(graph, daemon):
    """Fed by the running daemon: one latency observation per message committed (arrival
    from Graph's receivedDateTime), and the time left on the app token msal took."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from tests.servers import free_port

    graph.deliver(UPN, "inbox", *[human(Message_ID=f"<m{n}@x>", **TO) for n in range(3)])
    port = free_port()
    d = daemon(daemon={"metrics_listen": f"127.0.0.1:{port}"}).start()
    wait_for(lambda: count(graph, "inbox") == 0, 60, "the inbox to empty")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert got[("triage_ingest_latency_seconds_count", ())] == 3
    assert got[("triage_ingest_latency_seconds_bucket", (("le", "60.0"),))] == 3
    left = got[("triage_oauth_token_seconds_left", (("mailbox", "support"),))]
    assert 3000 < left <= 3600  # the stand-in's tokens live an hour, as Microsoft's
    assert d.stop() == 0
