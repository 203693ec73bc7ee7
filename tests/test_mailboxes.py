"""Many mailboxes in one daemon: at most `[daemon] max_imap_connections` connections to one
server; the mailboxes beyond the bound are polled in turn, and none is left out."""

from __future__ import annotations

import pytest

from triage.config import ConfigError, load_config
from triage.config.endpoints import Mailbox, Secret
from triage.service import connections

from .conftest import human
from .support.daemon import Daemon, mailbox_tables, wait_for
from .support.dovecot import Concurrent


def box(name: str, host: str = "imap.example", port: int = 993) -> Mailbox:
    return Mailbox(name, host, port, "tls", name, Secret("env", "PW"))


@pytest.mark.parametrize(
    ("count", "bound", "watched", "polled", "turns"),
    [
        (3, 100, 3, 0, 0),  # under the bound: every mailbox keeps its own connection
        (100, 100, 100, 0, 0),  # the default bound: 100 mailboxes IDLE without tuning
        (20, 5, 4, 16, 1),  # a tenth of the bound (one at least) is left for the turns
        (101, 100, 90, 11, 10),
        (5, 1, 0, 5, 1),  # a bound of one: every mailbox polled in turn over it
    ],
)
def test_the_plan_keeps_to_the_bound(count, bound, watched, polled, turns):
    (server,) = connections.plan([box(f"m{n}") for n in range(count)], bound).values()
    assert (len(server.watched), len(server.polled), server.turns) == (watched, polled, turns)
    assert len(server.watched) + server.turns <= bound
    assert server.watched == tuple(f"m{n}" for n in range(watched))  # the file's order


def test_the_bound_is_per_server_host_and_port():
    boxes = [box("a", "IMAP.example"), box("b", "imap.example"), box("c", port=143), box("d")]
    plan = connections.plan(boxes, 2)
    assert {name: (s.watched, s.polled) for name, s in plan.items()} == {
        "imap.example:993": (("a",), ("b", "d")),
        "imap.example:143": (("c",), ()),
    }


@pytest.mark.parametrize("value", [0, -1, 1.5, "10", 10_001])
def test_the_bound_is_checked(tmp_path, value):
    path = tmp_path / "triage.toml"
    written = f'"{value}"' if isinstance(value, str) else value
    path.write_text(f"[daemon]\nmax_imap_connections = {written}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "[daemon.max_imap_connections]" in str(caught.value)
    assert "fix: write max_imap_connections = 100" in str(caught.value)


def test_the_default_bound_is_100(tmp_path):
    path = tmp_path / "triage.toml"
    path.write_text("[daemon]\n")
    assert load_config(path).daemon.max_imap_connections == 100


def request(user: str, n: int) -> bytes:
    return human(
        From=f"Customer {user} <{user}@acme.example>",
        Subject=f"Request {n} for {user}",
        Message_ID=f"<{user}.{n}@acme.example>",
    )


def test_twenty_mailboxes_over_five_connections(tmp_path, make_dovecot):
    """20 mailboxes of one server, at most 5 connections: 4 IDLE, 16 polled in turn over the
    fifth. Every message, there before the start or sent while it runs, is one ticket; the
    server never has more than 5 connections open; `status` says which mailboxes are polled."""
    users = [f"user{n:02d}" for n in range(20)]
    dc = make_dovecot(users={u: f"pw-{u}" for u in users})
    from tests.support import imap

    for user in users:
        imap.append(dc, user, "INBOX", request(user, 1))
    d = Daemon(
        tmp_path / "d",
        daemon={"max_imap_connections": 5},
        extra=mailbox_tables(tmp_path / "d", dc, users, poll_seconds=1),
    )
    # the daemon's connections (the test's own helpers use the plain port); an extra one lives
    # for its TLS handshake and login at least, several milliseconds
    peak = Concurrent(dc, dc.tls_port, every=0.003)
    peak.start()
    try:
        d.start()
        wait_for(lambda: d.scalar("SELECT COUNT(*) FROM tickets") == 20, 15, "20 tickets")
        for user in users:  # while it runs: IDLE (the first 4) or the next turn (the rest)
            imap.append(dc, user, "INBOX", request(user, 2))
        wait_for(lambda: d.scalar("SELECT COUNT(*) FROM tickets") == 40, 10, "40 tickets")

        def settled() -> bool:  # the watched back in IDLE once their batch is filed
            states.update(d.query("SELECT mailbox, state FROM mailbox_state"))
            return [states.get(u) for u in users[:4]] == ["idle"] * 4

        states: dict[str, str] = {}
        wait_for(settled, 10, "the first four mailboxes to IDLE")
        status = d.cli("status", "--json").stdout
        assert d.stop() == 0
    finally:
        most = peak.stop()
        if d.running():
            d.kill()
    ids = [mid for (mid,) in d.query("SELECT message_id FROM messages")]
    assert sorted(ids) == sorted(f"<{u}.{n}@acme.example>" for u in users for n in (1, 2))
    assert d.scalar("SELECT COUNT(DISTINCT ticket_id) FROM messages") == 40
    assert all(imap.count(dc, u, "INBOX") == 0 for u in users)  # each filed once done
    assert 4 <= most <= 5, most
    assert [states[u] for u in users[:4]] == ["idle"] * 4
    assert set(states[u] for u in users[4:]) <= {"polled", "connecting", "fetching"}
    assert '"state": "polled"' in status
    polled = d.events("mailboxes_polled_in_turn")
    assert [(e["idle"], e["polled"], e["connections"]) for e in polled] == [(4, 16, 5)]


def test_a_folder_deleted_between_turns_is_made_again(tmp_path, make_dovecot):
    """A polled turn skips the folders' check an earlier turn made; when a folder went away
    in between, the move fails, the mail stays stored once, and the next turn makes the
    folder again and files it."""
    from tests.support import imap

    users = ["ann", "bob"]
    dc = make_dovecot(users={u: f"pw-{u}" for u in users})
    d = Daemon(
        tmp_path / "d",
        daemon={"max_imap_connections": 1},
        extra=mailbox_tables(tmp_path / "d", dc, users, poll_seconds=0.5),
    )
    try:
        d.start()
        imap.append(dc, "ann", "INBOX", request("ann", 1))
        wait_for(lambda: imap.count(dc, "ann", "Triage.Processed") == 1, 15, "filed")
        with imap.session(dc, "ann") as m:
            imap.ok(*m.delete("Triage.Processed"), "DELETE")
        imap.append(dc, "ann", "INBOX", request("ann", 2))
        wait_for(lambda: imap.count(dc, "ann", "Triage.Processed") == 1, 15, "filed again")
        assert imap.count(dc, "ann", "INBOX") == 0
        assert d.stop() == 0
    finally:
        if d.running():
            d.kill()
    assert d.scalar("SELECT COUNT(*) FROM tickets") == 2
    assert [e["polled"] for e in d.events("mailbox_connected")][:2] == [True, True]


def test_check_prints_each_servers_plan(tmp_path):
    from click.testing import CliRunner

    from triage.cli import cli

    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    pw.chmod(0o600)
    tables = "".join(
        f'[[mailbox]]\nname = "{n}"\nhost = "imap.example"\nusername = "{n}"\n'
        f'password_file = "{pw}"\n'
        for n in ("ann", "bob", "cid")
    )
    path = tmp_path / "triage.toml"
    path.write_text(
        f'[store]\ndb = "{tmp_path / "t.db"}"\n{tables}[daemon]\nmax_imap_connections = 2\n'
    )
    done = CliRunner().invoke(cli, ["check", "--config", str(path)])
    assert done.exit_code == 0, done.output
    assert (
        "imap     imap.example:993: 3 mailbox(es), at most 2 connection(s): 1 keep their own "
        "(IDLE), 2 polled in turn over 1" in done.output
    )


def test_connections_naming_one_ca_file_share_its_context_until_it_changes(tmp_path):
    """One TLS context per CA file (a hundred mailboxes held a hundred certificate stores);
    a CA file replaced on disk is read again at the next connection."""
    import os

    from tests.support.certs import make_cert
    from triage.sources.imap import tls_context

    first, _ = make_cert(tmp_path / "a")
    other, _ = make_cert(tmp_path / "b")
    shared = tls_context(str(first))
    assert tls_context(str(first)) is shared
    assert tls_context(str(other)) is not shared
    before = shared.get_ca_certs()
    first.write_bytes(other.read_bytes())
    stat = first.stat()
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    renewed = tls_context(str(first))
    assert renewed is not shared
    assert renewed.get_ca_certs() != before
