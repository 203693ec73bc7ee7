"""Several `triage run` on one PostgreSQL store (`[store] url`): each mailbox is worked by the
daemon that holds its lease, every message becomes one ticket and every acknowledgement is
sent once; a daemon killed with SIGKILL loses its mailboxes to another within the lease's
term plus 5 s. Real parts: a private Dovecot, PostgreSQL and SMTP sink."""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.support import imap
from triage.config import ConfigError, load_config

from .conftest import human
from .support.daemon import Daemon, killed_after, mailbox_tables, wait_for

LEASE = 4  # seconds: [daemon] lease_seconds, short so that a take-over is seen quickly


def request(user: str, n: int) -> bytes:
    return human(
        From=f"Customer {user} <{user}.{n}@acme.example>",
        Subject=f"Request {n} for {user}",
        Message_ID=f"<{user}.{n}@acme.example>",
    )


def smtp_tables(port: int) -> str:
    return (
        '[identity]\ndomains = ["msp.example"]\nsupport_address = "support@msp.example"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\nallow_insecure = true\n'
    )


def holders(d: Daemon) -> dict[str, str]:
    """Each live mailbox lease's owner (host:pid:token)."""
    rows = d.query(
        "SELECT name, owner FROM leases WHERE name LIKE 'mailbox:%' AND expires_at > ?",
        time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
    )
    return {name.removeprefix("mailbox:"): owner for name, owner in rows}


def pid_of(owner: str) -> int:
    return int(owner.split(":")[-2])


@pytest.mark.parametrize("written", [0, 2.9, 3601, "30", True])
def test_a_lease_shorter_than_a_renewal_can_outrun_or_longer_than_an_hour_is_refused(
    tmp_path, written
):
    """A lease of under 3 s races the database's own latency at each renewal; one of over an
    hour leaves a dead daemon's mailboxes unwatched that long: `triage check` and the start
    refuse it, naming the key and the fix."""
    path = tmp_path / "triage.toml"
    path.write_text(f"[daemon]\nlease_seconds = {json.dumps(written)}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "[daemon.lease_seconds]" in str(caught.value)
    assert "fix: write lease_seconds = 30" in str(caught.value)


def test_the_lease_bounds_are_taken(tmp_path):
    path = tmp_path / "triage.toml"
    for edge in (3, 3600):
        path.write_text(f"[daemon]\nlease_seconds = {edge}\n")
        assert load_config(path).daemon.lease_seconds == edge


def one_mailbox(make, tmp_path, dc, url: str) -> Daemon:
    """A daemon on `url` watching box0 of `dc`, started once its first message is a ticket."""
    imap.append(dc, "box0", "INBOX", request("box0", 1))
    d = make(
        tmp_path / "d",
        daemon={"lease_seconds": LEASE},
        extra=mailbox_tables(tmp_path / "d", dc, ["box0"]),
        store_url=url,
    ).start()
    wait_for(lambda: d.scalar("SELECT COUNT(*) FROM tickets") == 1, 30, "the first ticket")
    return d


def test_two_daemons_share_the_mailboxes_and_one_takes_over_from_a_killed_one(
    tmp_path, make_dovecot, postgres_url, smtp_sink
):
    users = [f"box{n}" for n in range(4)]
    dc = make_dovecot(users={u: f"pw-{u}" for u in users})
    for user in users:
        imap.append(dc, user, "INBOX", request(user, 1))
    files = tmp_path / "files"  # one folder for both, as a shared mount would be

    def config(name: str) -> dict:
        return {
            "daemon": {"lease_seconds": LEASE, "outbox_seconds": 1},
            "extra": smtp_tables(smtp_sink.port) + mailbox_tables(tmp_path / name, dc, users),
            "store_url": postgres_url,
            "files": files,
        }

    with killed_after(Daemon) as make:
        a = make(tmp_path / "a", **config("a")).start()
        b = make(tmp_path / "b", **config("b")).start()
        wait_for(lambda: a.scalar("SELECT COUNT(*) FROM tickets") == 4, 30, "4 tickets")
        wait_for(lambda: len(holders(a)) == 4, 10, "every mailbox held")
        owners = holders(a)
        assert {pid_of(o) for o in owners.values()} <= {a.pid, b.pid}
        shown = json.loads(a.cli("status", "--json", codes=(0, 1, 2)).stdout)
        assert {m["mailbox"]: m["held_by"] for m in shown["mailboxes"]} == owners

        # the daemon holding box0 dies; its mailboxes go to the other one
        victim, other = (a, b) if pid_of(owners["box0"]) == a.pid else (b, a)
        lost = sorted(u for u, o in owners.items() if pid_of(o) == victim.pid)
        victim.kill()
        killed = time.monotonic()
        wait_for(
            lambda: all(pid_of(holders(other).get(u, "::0:")) == other.pid for u in lost),
            LEASE + 10,
            "the killed daemon's mailboxes taken over",
        )
        took = time.monotonic() - killed
        for user in users:  # mail sent after the kill, to every mailbox, is worked too
            imap.append(dc, user, "INBOX", request(user, 2))
        wait_for(lambda: other.scalar("SELECT COUNT(*) FROM tickets") == 8, 30, "8 tickets")
        wait_for(lambda: len(smtp_sink.messages()) >= 8, 20, "8 acknowledgements")
        victim.start()  # back: it waits for leases and takes none while the other holds them
        time.sleep(LEASE)
        assert {pid_of(o) for o in holders(other).values()} == {other.pid}
        assert other.stop() == 0
        wait_for(lambda: len(holders(victim)) == 4, LEASE + 5, "the restarted one takes over")
        assert victim.stop() == 0
        took_over = victim.events("lease_taken")
        ids = [mid for (mid,) in other.query("SELECT message_id FROM messages")]
        tickets = other.scalar("SELECT COUNT(DISTINCT ticket_id) FROM messages")
        sent = [raw for _, _, raw in smtp_sink.messages()]
    print(f"take-over {took:.1f} s after SIGKILL, lease {LEASE} s")
    assert took <= LEASE + 5, took
    assert sorted(ids) == sorted(f"<{u}.{n}@acme.example>" for u in users for n in (1, 2))
    assert tickets == 8
    assert all(imap.count(dc, u, "INBOX") == 0 for u in users)
    assert len(sent) == 8  # each acknowledgement once, from whichever daemon drained it
    answered = {
        line for raw in sent for line in raw.split(b"\n") if line.startswith(b"In-Reply-To")
    }
    assert len(answered) == 8
    assert len(took_over) >= 4


def test_the_sla_timer_runs_on_one_daemon_at_a_time(tmp_path, postgres_url):
    """Two daemons with no mailbox: one holds `timer:sla`, the other waits; a graceful stop
    hands it over at once (no wait for the term)."""
    with killed_after(Daemon) as make:
        opts = {"daemon": {"lease_seconds": 30}, "store_url": postgres_url, "files": tmp_path}
        a = make(tmp_path / "a", **opts).start()
        wait_for(lambda: a.scalar("SELECT COUNT(*) FROM leases") == 1, 20, "the SLA lease")
        b = make(tmp_path / "b", **opts).start()
        wait_for(lambda: b.events("daemon_ready"), 20, "the second daemon ready")
        (owner,) = [o for (o,) in a.query("SELECT owner FROM leases WHERE name = 'timer:sla'")]
        assert pid_of(owner) == a.pid
        started = time.monotonic()
        a.signal(signal.SIGTERM)
        assert a.wait(20) == 0
        wait_for(
            lambda: [pid_of(o) for (o,) in b.query("SELECT owner FROM leases")] == [b.pid],
            20,
            "the SLA lease handed over",
        )
        assert time.monotonic() - started < 15  # released, not left to run out (30 s)
        assert b.stop() == 0


def test_a_connection_the_server_drops_is_opened_again(tmp_path, make_dovecot, postgres_url):
    """The server cuts every connection of the daemon (a restart, a failover, a proxy's idle
    cut): the daemon connects again and goes on, its lease kept or taken again."""
    dc = make_dovecot(users={"box0": "pw-box0"})
    with killed_after(Daemon) as make:
        d = one_mailbox(make, tmp_path, dc, postgres_url)
        cut = d.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'triage' AND pid <> pg_backend_pid()"
        )
        assert len(cut) >= 2  # the store's connection and the leases'
        imap.append(dc, "box0", "INBOX", request("box0", 2))
        wait_for(lambda: d.scalar("SELECT COUNT(*) FROM tickets") == 2, 30, "the second ticket")
        wait_for(lambda: len(holders(d)) == 1, LEASE + 5, "the mailbox held again")
        assert d.stop() == 0
        assert d.events("store_reconnected")
    assert imap.count(dc, "box0", "INBOX") == 0


def test_a_daemon_that_loses_its_lease_stops_touching_the_mailbox(
    tmp_path, make_dovecot, postgres_url
):
    """Another owner holds the mailbox's lease now (taken after this daemon's ran out, as
    when its renewals could not get through): at its next renewal the daemon stops working
    the mailbox, and mail that arrives stays untouched on the server until the lease is free
    again."""
    dc = make_dovecot(users={"box0": "pw-box0"})
    with killed_after(Daemon) as make:
        d = one_mailbox(make, tmp_path, dc, postgres_url)
        d.query(
            "UPDATE leases SET owner = 'elsewhere:1:beef', expires_at = '2999-01-01T00:00:00.000000Z'"
            " WHERE name = 'mailbox:box0' RETURNING name"
        )
        wait_for(lambda: d.events("lease_lost"), LEASE + 2, "the loss noticed")
        imap.append(dc, "box0", "INBOX", request("box0", 2))
        time.sleep(LEASE)
        assert imap.count(dc, "box0", "INBOX") == 1  # not fetched, not filed
        assert d.scalar("SELECT COUNT(*) FROM messages") == 1
        d.query("DELETE FROM leases WHERE owner = 'elsewhere:1:beef' RETURNING name")
        wait_for(lambda: d.scalar("SELECT COUNT(*) FROM tickets") == 2, 20, "taken again")
        assert d.stop() == 0
    assert imap.count(dc, "box0", "INBOX") == 0
