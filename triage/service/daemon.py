"""`triage run`: mailboxes -> pipeline -> store -> acknowledgement, as one asyncio program.

One task per mailbox, one for the periodic SLA check, one for the watchdog.
Parsing runs in worker processes under a per-message time limit, so one poison
message never blocks the rest; a message is moved, flagged or deleted on the
server only after the commit that holds it. SIGTERM or SIGINT, to the daemon or
its whole process group, finishes the batch in hand (a second one stops at once);
SIGHUP reloads rules and contacts, keeping the old ones if the new are broken.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from triage import log
from triage.config import Config, load_config
from triage.core import leases
from triage.core.pipeline import Rules
from triage.desk.snapshot import Live
from triage.engine.pool import Pool
from triage.errors import TriageError
from triage.service import connections, delivering, metrics_endpoint
from triage.service.connections import Gates
from triage.service.graph_loop import GraphLoop
from triage.service.health import Health, HealthWatch
from triage.service.leasing import Holding, under_lease
from triage.service.notify import Notifier
from triage.service.timers import Timers
from triage.sinks import outbox
from triage.store import contacts as contacts_store
from triage.store import lock as daemon_lock
from triage.store import mailboxes as mailbox_state
from triage.store import outbox as outbox_rows
from triage.store import reloads
from triage.store.backends import open_configured

STOP_GRACE = 20.0  # seconds to finish the batch in hand after SIGTERM (the unit allows 30)
CANCEL_GRACE = 3.0  # then seconds for what was cut short to close its connections


class Daemon(GraphLoop, HealthWatch, Timers):
    """The daemon's state and lifecycle: start the tasks, stop them within a bound, reload.

    Its tasks live by concern beside it: mailbox_loop.py (one per IMAP mailbox),
    graph_loop.py (one per Graph mailbox), health.py
    (state rows, alerts, readiness, stalls), timers.py (SLA checks, outbox, watchdog).
    """

    def __init__(
        self, config_path: Path | None, config: Config, rules: Rules, notifier: Notifier
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.rules = rules
        self.notifier = notifier
        self.log = log.get(component="daemon")
        self.store = open_configured(config)
        # Several daemons may share a PostgreSQL store: each mailbox, and the SLA timer, is
        # worked by the one that holds its lease (triage.core.leases); the lease rows go
        # through a connection of their own. SQLite has one daemon (its flock) and no leases.
        shared = self.store.dialect == "postgresql"
        self.owner = outbox_rows.owner_id()
        self.lease_store = open_configured(config) if shared else None
        self.term = leases.Term.of(config.daemon.lease_seconds)
        self.outbox_wake = asyncio.Event()
        self.analyser = Pool(rules, self.store.files)
        self.stop = asyncio.Event()
        self.hurry = asyncio.Event()  # a second signal: stop now, not after the batch in hand
        self.lock = asyncio.Lock()  # one batch in the store at a time
        self.health = {
            mb.name: Health(state="standby", standby=True) if shared else Health()
            for mb in (*config.mailboxes, *config.graph_mailboxes)
        }
        self.gates = Gates(config.mailboxes, config.daemon.max_imap_connections)
        relay = outbox.relay_health(self.store)
        self.relay_error: str | None = relay["last_error"] if relay and relay["failing"] else None
        self.ready_sent = False
        self.live = Live()  # ingest latency and OAuth tokens' expiry, for the metrics endpoint

    # -- lifecycle ------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._request_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        self.log.info("daemon_started", mailboxes=list(self.health), pid=os.getpid())
        for server in self.gates.plan.values():
            if server.polled:
                self.log.info(
                    "mailboxes_polled_in_turn",
                    server=server.name,
                    idle=len(server.watched),
                    polled=len(server.polled),
                    connections=server.bound,
                    fix="raise [daemon] max_imap_connections to IDLE on every mailbox",
                )
        reloads.record(self.store, reloads.STARTED)  # a rejection before this restart is over
        try:
            exporter = metrics_endpoint.start(self.config, self.log, self.live)
        except TriageError:
            self.analyser.close()  # its worker processes, before the error is printed
            self.store.close()
            raise
        tasks = [
            asyncio.create_task(self._mailbox_leased(mb, self._mailbox), name=f"mailbox:{mb.name}")
            for mb in self.config.mailboxes
        ]
        tasks += [
            asyncio.create_task(
                self._mailbox_leased(mb, self._graph_mailbox), name=f"mailbox:{mb.name}"
            )
            for mb in self.config.graph_mailboxes
        ]
        tasks.append(
            asyncio.create_task(self._leased(leases.timer("sla"), self._sla_checks), name="sla")
        )
        tasks.append(asyncio.create_task(self._stall_checks(), name="stalls"))
        if self.config.smtp is not None or self.config.graph_sending is not None:
            tasks.append(asyncio.create_task(self._outbox(), name="outbox"))
        tasks.append(asyncio.create_task(self._watchdog(), name="watchdog"))
        tasks.append(
            asyncio.create_task(
                delivering.run(self.store, lambda: self.rules.config, self.lock, self.stop),
                name="deliveries",
            )
        )
        if not self.health:
            self.log.warning("no_mailboxes", fix="add a [[mailbox]] table to the configuration")
            self._maybe_ready()
        elif (
            self.lease_store is not None
        ):  # each mailbox taken, or seen held by another daemon: ready
            await asyncio.sleep(0)
            self._maybe_ready()
        await self.stop.wait()
        self.notifier.stopping()
        self.log.info("daemon_stopping")
        await self._wind_down(tasks)
        if (
            self.lease_store is None
        ):  # a shared store's rows belong to the daemon holding each mailbox
            for name in self.health:
                mailbox_state.update(self.store, name, state="stopped")
        self.analyser.close()
        self.store.close()
        if self.lease_store is not None:
            self.lease_store.close()
        if exporter is not None:
            exporter.close()
        self.log.info("daemon_stopped")
        return 0

    def _leased(
        self,
        name: str,
        work: Callable[[], Awaitable[None]],
        on_hold: Callable[[bool], None] = lambda held: None,
    ) -> Awaitable[None]:
        """`work()` as it is on SQLite; on a shared store, run only while this daemon
        holds lease `name` (service/leasing.under_lease)."""
        if self.lease_store is None:
            return work()
        holding = Holding(self.lease_store, name, self.owner, self.term)
        return under_lease(holding, self.stop, work, on_hold)

    def _mailbox_leased(self, mb, loop: Callable[[Any], Awaitable[None]]) -> Awaitable[None]:
        """A mailbox's loop, under its lease on a shared store: while another daemon holds
        it, this one keeps it `standby` (in its own STATUS= line only: the state row is the
        holder's to write)."""
        health = self.health[mb.name]

        def on_hold(held: bool) -> None:
            health.standby = not held
            if held:  # the stall clock starts from the take, not from the last holder's work
                health.state, health.progress_at = "starting", datetime.now(UTC)
            else:
                if self.stop.is_set():  # given up to stop: said before another takes it
                    mailbox_state.update(self.store, mb.name, state="stopped")
                health.state = "standby"
            self._status()

        return self._leased(leases.mailbox(mb.name), lambda: loop(mb), on_hold)

    async def _wind_down(self, tasks: list[asyncio.Task]) -> None:
        """Let each task finish what it holds (the batch in hand is committed and filed), for
        STOP_GRACE at most or until a second signal; then cancel what is left, which closes
        its connection. What was cancelled before its commit is fetched again next time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_GRACE
        pending = set(tasks)
        hurry = asyncio.ensure_future(self.hurry.wait())
        try:
            while pending and not self.hurry.is_set() and loop.time() < deadline:
                done, _ = await asyncio.wait(
                    pending | {hurry},
                    timeout=deadline - loop.time(),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                pending -= done
        finally:
            hurry.cancel()
        if pending:
            self.log.warning("stop_cut_short", tasks=sorted(t.get_name() for t in pending))
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=CANCEL_GRACE)

    def _request_stop(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self.stop.is_set():
            self.log.warning("stop_hurried", signal=name)  # stop now: the batch in hand waits
            self.hurry.set()
            return
        self.log.info("signal_received", signal=name)
        self.stop.set()

    async def reload(self) -> None:
        """SIGHUP: new rules and contacts, or the old ones kept with the reason logged."""
        self.notifier.reloading()
        try:
            config = load_config(self.config_path)
            rules = Rules.load(config, contacts_store.load(self.store))
        except Exception as exc:  # noqa: BLE001 - any broken file: keep running on the old rules
            self.log.error("reload_rejected", error=str(exc))
            reloads.record(self.store, reloads.REJECTED, str(exc))  # for `triage status`
            self.notifier.status(f"reload rejected: {str(exc).splitlines()[0]}")
            self.notifier.ready()
            return
        async with self.lock:
            if self.stop.is_set():
                return  # stopping: a new worker pool now would only be stopped again
            self.rules = rules
            self.analyser.reload(rules)
            reloads.record(self.store, reloads.RELOADED)
        self.log.info("reloaded", contacts=len(rules.directory), filters=len(rules.filters.rules))
        self.notifier.ready()
        self._status()


FDS_BESIDE_CONNECTIONS = 256  # the database, worker pipes, the relay, sinks, metrics


def _enough_files(connections: int) -> None:
    """Raise the soft limit on open files to what the mailboxes' connections need (up to the
    hard limit): each is a socket, and the soft limit is often 1,024 (systemd's default)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + FDS_BESIDE_CONNECTIONS
    if soft != resource.RLIM_INFINITY and soft < want:
        top = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))


def run(config_path: Path | None) -> int:
    """Load, refuse to start on a broken configuration or beside another daemon on the same
    database (daemon_lock.AlreadyRunning), then serve until told to stop."""
    config = load_config(config_path)
    # SQLite: one daemon per database (flock). PostgreSQL: several, sharing the work by leases.
    held = daemon_lock.acquire(config.db) if config.database is None else None
    servers = connections.plan(config.mailboxes, config.daemon.max_imap_connections)
    _enough_files(sum(len(s.watched) + s.turns for s in servers.values()))
    try:
        store = open_configured(config)
        contacts = contacts_store.load(store)
        store.close()
        rules = Rules.load(config, contacts)
        notifier = Notifier.from_env()

        async def main() -> int:
            daemon = Daemon(config_path, config, rules, notifier)
            return await daemon.run()

        return asyncio.run(main())
    finally:
        if held is not None:
            held.release()
