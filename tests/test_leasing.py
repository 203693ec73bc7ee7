"""A daemon holding a lease (triage/service/leasing.py), on SQLite and PostgreSQL: it renews
it past its term, another daemon waits, takes it when the holder dies without giving it
back, and a holder whose lease was taken finds out at its next renewal."""

from __future__ import annotations

import asyncio
import time

import pytest

from triage.core.leases import Term, mailbox
from triage.service.leasing import Holding
from triage.store import leases

TERM = Term.of(3)


@pytest.fixture(params=["sqlite", "postgresql"])
def two(request, tmp_path):
    """Two connections to one fresh store, as two daemons have."""
    if request.param == "sqlite":
        from triage.store.sqlite import Store

        made = [Store(tmp_path / "t.db"), Store(tmp_path / "t.db")]
    else:
        from tests.support.postgres import PASSWORD
        from triage.config.credentials import Secret
        from triage.config.storage import Database
        from triage.store.postgres import PostgresStore

        url = request.getfixturevalue("postgres_url")
        secret = tmp_path / "pg-password"
        secret.write_text(PASSWORD)
        database = Database(url, Secret("file", str(secret)), tmp_path / "t.files")
        made = [PostgresStore(database), PostgresStore(database)]
    try:
        yield made
    finally:
        for s in made:
            s.close()


def test_the_holder_keeps_the_lease_past_its_term_and_the_other_waits(two):
    a = Holding(two[0], mailbox("support"), "daemon-a", TERM)
    b = Holding(two[1], mailbox("support"), "daemon-b", TERM)

    async def scene():
        stop, b_stop = asyncio.Event(), asyncio.Event()
        assert await a.acquire(stop)
        keeping = asyncio.create_task(a.keep(stop))
        waiting = asyncio.create_task(b.acquire(b_stop))
        await asyncio.sleep(TERM.seconds * 2)  # two terms: a renewed it four times
        assert not waiting.done() and not a.lost.is_set()
        b_stop.set()
        assert await waiting is False
        stop.set()
        await keeping
        a.release()

    asyncio.run(scene())
    assert leases.held(two[0], mailbox("support")) is None  # released on stop


def test_a_holder_that_dies_loses_the_lease_to_the_other_within_the_term(two):
    a = Holding(two[0], mailbox("support"), "daemon-a", TERM)
    b = Holding(two[1], mailbox("support"), "daemon-b", TERM)

    async def scene() -> float:
        stop = asyncio.Event()
        assert await a.acquire(stop)
        keeping = asyncio.create_task(a.keep(stop))
        await asyncio.sleep(1.5)
        keeping.cancel()  # a is SIGKILLed: no renewal, no release
        died = time.monotonic()
        assert await b.acquire(stop)
        return time.monotonic() - died

    took = asyncio.run(scene())
    # the term from a's last renewal (at most a third of a term before it died), plus
    # b's wait between tries
    assert took <= TERM.seconds + TERM.renew_every + 0.5, took
    assert leases.held(two[1], mailbox("support")).owner == "daemon-b"


def test_a_holder_whose_lease_was_taken_finds_out_at_its_next_renewal(two):
    a = Holding(two[0], mailbox("support"), "daemon-a", TERM)

    async def scene() -> float:
        stop = asyncio.Event()
        assert await a.acquire(stop)
        keeping = asyncio.create_task(a.keep(stop))
        # a stalls (its row expired), and another daemon takes the lease
        two[1].conn.execute(
            "UPDATE leases SET owner = 'daemon-b' WHERE name = ?", (mailbox("support"),)
        )
        taken = time.monotonic()
        await asyncio.wait_for(a.lost.wait(), TERM.seconds)
        await keeping
        return time.monotonic() - taken

    noticed = asyncio.run(scene())
    assert noticed <= TERM.renew_every + 0.5, noticed
    assert leases.held(two[0], mailbox("support")).owner == "daemon-b"  # a did not take it back


def test_on_postgres_a_holder_cut_off_from_the_database_stops_before_its_lease_ends(two, request):
    if two[0].dialect != "postgresql":
        pytest.skip("a connection the server drops: PostgreSQL's")
    import psycopg

    server = request.getfixturevalue("postgres_server")
    a = Holding(two[0], mailbox("support"), "daemon-a", TERM)

    async def scene() -> tuple[float, float]:
        stop = asyncio.Event()
        assert await a.acquire(stop)
        renewed = time.monotonic()  # at most this late: the row's expiry is TERM after it
        keeping = asyncio.create_task(a.keep(stop))
        # the server drops the holder's connection and takes no new one: every renewal
        # from now on fails (the store would connect again at once if it could)
        pid = two[0].conn.raw.info.backend_pid
        name = two[1].conn.raw.info.dbname
        with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            try:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                await asyncio.wait_for(a.lost.wait(), TERM.seconds * 2)
                await keeping
            finally:
                admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        return renewed, time.monotonic()

    renewed, lost = asyncio.run(scene())
    row = leases.held(two[1], mailbox("support"))
    assert row.owner == "daemon-a"  # nobody took it: a stopped on its own
    assert lost - renewed < TERM.seconds, lost - renewed  # before the lease ran out
