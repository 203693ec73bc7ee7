"""Leases: the pure rules (who may take, when to renew), and the rows on both backends:
two owners, expiry, renewal, and a stolen lease found by its loser at the next renewal."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from triage.core.leases import Held, Term, mailbox, stamp, timer
from triage.store import leases

T0 = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
TERM = Term.of(30)


# -- the rules ---------------------------------------------------------------------------
def test_a_holder_renews_at_a_third_of_the_term_and_holds_until_the_term_from_then():
    assert TERM.renew_every == 10.0
    assert TERM.until(T0) == T0 + timedelta(seconds=30)


@pytest.mark.parametrize("seconds", [0, 2.9, 3601, -5])
def test_a_term_too_short_or_too_long_is_refused(seconds):
    with pytest.raises(ValueError, match="3 to 3600 seconds"):
        Term.of(seconds)


def test_a_lease_is_taken_by_its_holder_or_by_anyone_once_expired():
    lease = Held("mailbox:support", "a", T0 + timedelta(seconds=30))
    assert lease.may_take("a", T0)
    assert not lease.may_take("b", T0 + timedelta(seconds=29.999))
    assert lease.may_take("b", T0 + timedelta(seconds=30))


def test_stamps_order_as_text_as_the_instants_do():
    instants = [T0, T0 + timedelta(microseconds=1), T0 + timedelta(seconds=0.5), T0 + timedelta(1)]
    assert sorted(instants, key=stamp) == instants
    assert stamp(T0) == "2026-03-10T14:30:00.000000Z"


def test_lease_names_say_what_they_guard():
    assert mailbox("support") == "mailbox:support"
    assert timer("sla") == "timer:sla"


# -- the rows, on SQLite and PostgreSQL --------------------------------------------------
def test_two_owners_one_lease_the_second_waits_for_the_expiry(store):
    name = mailbox("support")
    assert leases.take(store, name, "a", T0, TERM) == T0 + timedelta(seconds=30)
    assert leases.take(store, name, "b", T0 + timedelta(seconds=29), TERM) is None
    assert leases.held(store, name) == Held(name, "a", T0 + timedelta(seconds=30))
    # a's lease runs out: b takes it
    assert leases.take(store, name, "b", T0 + timedelta(seconds=30), TERM) is not None
    assert leases.held(store, name).owner == "b"


def test_renewal_keeps_the_lease_past_its_first_expiry(store):
    name = timer("sla")
    leases.take(store, name, "a", T0, TERM)
    assert leases.renew(store, name, "a", T0 + timedelta(seconds=10), TERM) == T0 + timedelta(
        seconds=40
    )
    assert leases.take(store, name, "b", T0 + timedelta(seconds=35), TERM) is None
    assert leases.held_by(store, "a", T0 + timedelta(seconds=35)) == [name]


def test_a_stolen_lease_is_found_by_its_loser_at_its_next_renewal(store):
    name = mailbox("sales")
    leases.take(store, name, "a", T0, TERM)
    # a stalls past its expiry; b takes the lease
    assert leases.take(store, name, "b", T0 + timedelta(seconds=31), TERM) is not None
    # a comes back and renews: refused, and the row is still b's
    assert leases.renew(store, name, "a", T0 + timedelta(seconds=32), TERM) is None
    assert leases.held(store, name).owner == "b"
    assert leases.held_by(store, "a", T0 + timedelta(seconds=32)) == []


def test_release_frees_at_once_and_only_for_its_holder(store):
    name = mailbox("billing")
    leases.take(store, name, "a", T0, TERM)
    assert not leases.release(store, name, "b")
    assert leases.take(store, name, "b", T0 + timedelta(seconds=1), TERM) is None
    assert leases.release(store, name, "a")
    assert leases.held(store, name) is None
    assert leases.take(store, name, "b", T0 + timedelta(seconds=1), TERM) is not None


def _pg_store(url, tmp_path):
    from tests.support.postgres import PASSWORD
    from triage.config.credentials import Secret
    from triage.config.storage import Database
    from triage.store.postgres import PostgresStore

    secret = tmp_path / "pg-password"
    secret.write_text(PASSWORD)
    return PostgresStore(Database(url, Secret("file", str(secret)), tmp_path / "t.files"))


def test_on_postgres_many_connections_racing_for_one_lease_give_it_to_one(postgres_url, tmp_path):
    stores = [_pg_store(postgres_url, tmp_path) for _ in range(8)]
    won: list[str] = []
    start = threading.Barrier(len(stores))

    def race(n: int) -> None:
        start.wait()
        for lap in range(20):  # the lease expires every lap: each lap has one winner
            at = T0 + timedelta(seconds=31 * lap)
            if leases.take(stores[n], mailbox("support"), f"owner-{n}", at, TERM):
                won.append(f"{lap}:{n}")

    try:
        threads = [threading.Thread(target=race, args=(n,)) for n in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for s in stores:
            s.close()
    laps = [w.split(":")[0] for w in won]
    assert len(laps) == len(set(laps)), won  # never two owners in one lap
