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
import contextlib
import hashlib
import os
import random
import secrets
import signal
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from triage import log
from triage.config import Config, load_config
from triage.config.endpoints import Mailbox
from triage.core import alerts
from triage.core import sla as sla_mod
from triage.core.pipeline import Action, Analysis, Decision, Rules
from triage.engine import review
from triage.engine.batch import log_decision, run_batch
from triage.engine.pool import Pool, Task
from triage.engine.pool import unreadable as _quarantine
from triage.service import delivering, tracking
from triage.service.notify import Notifier
from triage.sinks import outbox
from triage.sources.files import Item
from triage.sources.imap import Fetched, ImapError, ImapSession
from triage.store import contacts as contacts_store
from triage.store import lock as daemon_lock
from triage.store import mailboxes as mailbox_state
from triage.store import reloads
from triage.store.sqlite import Store

OUTCOME = {
    Action.TICKET: "processed",
    Action.APPEND: "processed",
    Action.FILTERED: "filtered",
    Action.REVIEW: "review",
    Action.QUARANTINED: "errors",
}

STOP_GRACE = 20.0  # seconds to finish the batch in hand after SIGTERM (the unit allows 30)
CANCEL_GRACE = 3.0  # then seconds for what was cut short to close its connections


ROUND = 100  # outbox rows per drain round; a full round is followed by another at once
AHEAD = 1  # batches fetched and with the workers beyond the one being written (2 was no faster)
BATCH_BYTES = 64 * 1024 * 1024  # message bytes per batch, so memory stays bounded


@dataclass(frozen=True, slots=True)
class _Batch:
    """One fetched batch, handed to the workers, not yet written."""

    uids: list[int]
    fetched: list[Fetched]
    sources: list[str]
    tasks: list[Task]


@dataclass
class Health:
    """What `triage status` and the STATUS= line say about one mailbox."""

    state: str = "starting"
    failures: int = 0  # sessions in a row that failed before filing anything
    failing: bool = False
    logged_in_once: bool = False
    last_error: str = ""
    stalled_since: datetime | None = None
    alerts_sent: set[str] = field(default_factory=set)
    filed: bool = False  # this session has filed a batch (or found nothing to file)
    progress_at: datetime = field(default_factory=lambda: datetime.now(UTC))  # the stall clock


class Daemon:
    def __init__(
        self, config_path: Path | None, config: Config, rules: Rules, notifier: Notifier
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.rules = rules
        self.notifier = notifier
        self.log = log.get(component="daemon")
        self.store = Store(config.db, config.ticket_prefix)
        mailbox_state.ensure(self.store)
        outbox.ensure(self.store)
        self.outbox_wake = asyncio.Event()
        self.analyser = Pool(rules, self.store.files)
        self.stop = asyncio.Event()
        self.hurry = asyncio.Event()  # a second signal: stop now, not after the batch in hand
        self.lock = asyncio.Lock()  # one batch in the store at a time
        self.health = {mb.name: Health() for mb in config.mailboxes}
        relay = outbox.relay_health(self.store)
        self.relay_error: str | None = relay["last_error"] if relay and relay["failing"] else None
        self.ready_sent = False

    # -- lifecycle ------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._request_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        self.log.info(
            "daemon_started", mailboxes=[mb.name for mb in self.config.mailboxes], pid=os.getpid()
        )
        reloads.record(self.store, reloads.STARTED)  # a rejection before this restart is over
        tasks = [
            asyncio.create_task(self._mailbox(mb), name=f"mailbox:{mb.name}")
            for mb in self.config.mailboxes
        ]
        tasks.append(asyncio.create_task(self._sla_checks(), name="sla"))
        tasks.append(asyncio.create_task(self._stall_checks(), name="stalls"))
        if self.config.smtp is not None:
            tasks.append(asyncio.create_task(self._outbox(), name="outbox"))
        tasks.append(asyncio.create_task(self._watchdog(), name="watchdog"))
        tasks.append(
            asyncio.create_task(
                delivering.run(self.store, lambda: self.rules.config, self.lock, self.stop),
                name="deliveries",
            )
        )
        if not self.config.mailboxes:
            self.log.warning("no_mailboxes", fix="add a [[mailbox]] table to the configuration")
            self._maybe_ready()
        await self.stop.wait()
        self.notifier.stopping()
        self.log.info("daemon_stopping")
        await self._wind_down(tasks)
        for name in self.health:
            mailbox_state.update(self.store, name, state="stopped")
        self.analyser.close()
        self.store.close()
        self.log.info("daemon_stopped")
        return 0

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

    # -- one mailbox ------------------------------------------------------------
    async def _mailbox(self, mb: Mailbox) -> None:
        health = self.health[mb.name]
        logger = self.log.bind(mailbox=mb.name)
        delay = 1.0
        while not self.stop.is_set():
            session = ImapSession(mb)
            health.filed = False
            try:
                self._set(mb, health, "connecting")
                selected = await session.open()
                logger.info(
                    "mailbox_connected",
                    host=mb.host,
                    uidvalidity=selected.uidvalidity,
                    exists=selected.exists,
                )
                # A login is not health: the failure count and the backoff go on until this
                # session files mail (_filed). Reset here, a server that takes the login but
                # refuses every move was retried about once a second and never reported.
                health.logged_in_once = True
                mailbox_state.update(self.store, mb.name, last_ok_at=mailbox_state.now_text())
                self._maybe_ready()
                await self._serve(mb, session, selected, logger)
            except ImapError as exc:
                message = str(exc)
                if exc.kind == "config" and self.config_path is not None:
                    message = f"{self.config_path}: {message}"
                await self._failed(mb, health, logger, exc.kind, message)
            except (TimeoutError, OSError, ConnectionError) as exc:
                await self._failed(mb, health, logger, "connect", f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # noqa: BLE001 - never crash the daemon on one mailbox
                logger.exception("mailbox_error")
                await self._failed(mb, health, logger, "internal", f"{type(exc).__name__}: {exc}")
            finally:
                await session.close()
            if self.stop.is_set():
                break
            if health.filed:
                delay = 1.0  # this session worked: a new fault starts the backoff again
            # Exponential backoff with jitter, bounded: never a busy loop.
            wait = min(self.config.daemon.backoff_max_seconds, delay) * random.uniform(0.5, 1.0)
            logger.info(
                "mailbox_reconnect_scheduled", seconds=round(wait, 1), attempt=health.failures
            )
            await self._sleep(wait)
            delay = min(self.config.daemon.backoff_max_seconds, delay * 2)
        self._set(mb, health, "stopped")

    async def _serve(self, mb: Mailbox, session: ImapSession, selected, logger) -> None:
        pos = mailbox_state.position(self.store, mb.name)
        if pos.uidvalidity is not None and pos.uidvalidity != selected.uidvalidity:
            # The server renumbered the folder: rescan it all; message keys stop duplicates.
            logger.warning("uidvalidity_changed", was=pos.uidvalidity, now=selected.uidvalidity)
        mailbox_state.update(
            self.store, mb.name, uidvalidity=selected.uidvalidity, backlog=selected.exists
        )
        last_uid = 0  # after a (re)connect: everything unprocessed, whatever the bookkeeping says
        while not self.stop.is_set():
            self._set(mb, self.health[mb.name], "fetching")
            uids = await session.unprocessed(last_uid)
            mailbox_state.update(self.store, mb.name, backlog=len(uids))
            if not uids:
                self._filed(mb)  # nothing waits: as good as filed
            last_uid = max(
                last_uid, await self._drain(mb, session, selected.uidvalidity, uids, logger)
            )
            if self.stop.is_set():
                return
            self._set(mb, self.health[mb.name], "idle")
            if not await session.wait(self.stop):
                return

    async def _drain(
        self, mb: Mailbox, session: ImapSession, uidvalidity: int, uids: list[int], logger
    ) -> int:
        """Fetch, analyse, record and acknowledge `uids` in batches; the highest UID done.

        Stages overlap: up to AHEAD batches are fetched and handed to the workers
        before the oldest is written and acknowledged, so the workers parse
        while this process talks to the server and writes rows. One connection,
        used by this task alone, so commands never interleave. Each batch holds
        at most `batch` messages and BATCH_BYTES of them (one at least).
        """
        done = written = 0
        todo = deque(uids)
        pending: deque[_Batch] = deque()
        try:
            while True:
                while todo and len(pending) <= AHEAD and not self.stop.is_set():
                    chunk = [todo.popleft() for _ in range(min(mb.batch, len(todo)))]
                    fetched, left = await session.fetch(
                        chunk, self.config.max_bytes, budget=BATCH_BYTES
                    )
                    todo.extendleft(reversed(left))
                    pending.append(
                        self._start_batch(mb, uidvalidity, chunk[: len(chunk) - len(left)], fetched)
                    )
                if not pending:
                    break
                batch = pending.popleft()
                await self._process(mb, session, batch, logger)
                self._filed(mb)
                done, written = max(done, *batch.uids), written + len(batch.uids)
                mailbox_state.update(
                    self.store, mb.name, last_uid=done, backlog=len(uids) - written
                )
                if self.stop.is_set():
                    break  # the batch in hand is finished; what was fetched ahead comes back
        finally:
            # Abandoned (the connection dropped, a stop): these come back at the next
            # fetch; the workers' answers are dropped, and a stuck one is not resent.
            for batch in pending:
                for future, _part in batch.tasks:
                    future.cancel()
        return done

    def _start_batch(
        self, mb: Mailbox, uidvalidity: int, uids: list[int], fetched: list[Fetched]
    ) -> _Batch:
        sources = [f"imap:{mb.name}/{uidvalidity}/{f.uid}" for f in fetched]
        readable = [
            Item(src, f.raw) for src, f in zip(sources, fetched, strict=True) if f.raw is not None
        ]
        return _Batch(uids, fetched, sources, self.analyser.submit(readable))

    async def _process(self, mb: Mailbox, session: ImapSession, batch: _Batch, logger) -> None:
        analyses = iter(
            await self.analyser.collect(batch.tasks, self.config.daemon.message_timeout)
        )
        now = datetime.now(UTC)
        outcomes: dict[str, list[int]] = {
            "processed": [],
            "filtered": [],
            "review": [],
            "errors": [],
        }
        again: dict[str, list[tuple[int, str]]] = {}  # duplicates with a Message-ID
        batch_analyses: list[Analysis] = []
        for src, f in zip(batch.sources, batch.fetched, strict=True):
            if f.raw is None:
                analysis = _quarantine(
                    src,
                    None,
                    "too_large",
                    f"{f.size:,} bytes is over the limit of {self.config.max_bytes:,}",
                )
                analysis = replace(analysis, raw_sha256=hashlib.sha256(src.encode()).hexdigest())
            else:
                analysis = next(analyses)
            batch_analyses.append(analysis)
        async with self.lock:
            # keeps a quarantined message's bytes too
            raws = [f.raw for f in batch.fetched]
            decisions = run_batch(self.store, self.rules, batch_analyses, now, raws)
            for f, d in zip(batch.fetched, decisions, strict=True):
                if d.action == Action.DUPLICATE and d.message_id:
                    again.setdefault(self._outcome(d), []).append((f.uid, d.message_id))
                else:
                    outcomes[self._outcome(d)].append(f.uid)
        # Logged as committed: a move that fails next must not hide what was decided and stored.
        for d in decisions:
            log_decision(logger, d)
        # A duplicate may have been filed already (its copy here is a ghost) or not.
        outcomes["filed"] = []
        for outcome, pairs in again.items():
            filed = await session.already_filed(outcome, [mid for _, mid in pairs])
            for uid, mid in pairs:
                outcomes["filed" if mid in filed else outcome].append(uid)
        # Only now, with the rows committed, does the server hear about these messages.
        for outcome, uids in outcomes.items():
            await session.ack(uids, outcome)
        if decisions:
            mailbox_state.update(self.store, mb.name, last_message_at=mailbox_state.now_text())
        if any(d.auto_reply for d in decisions):
            self.outbox_wake.set()

    def _outcome(self, d: Decision) -> str:
        if d.action == Action.DUPLICATE:
            stored = self.store.conn.execute(
                "SELECT action FROM messages WHERE message_key = ?", (d.message_key,)
            ).fetchone()
            action = Action(stored[0]) if stored else Action.TICKET
            return OUTCOME.get(action, "processed")
        return OUTCOME[d.action]

    # -- health ------------------------------------------------------------------
    def _filed(self, mb: Mailbox) -> None:
        """A batch is filed on the server (or nothing waits): the stall clock starts again, and
        the first time in a session, the failure count too."""
        health = self.health[mb.name]
        health.progress_at = datetime.now(UTC)
        if health.filed:
            return
        health.filed = True
        was_failing = health.failing
        if was_failing:  # said when it works again: filing mail, not a login
            self._recovered(mb, health, self.log.bind(mailbox=mb.name))
        health.failures, health.failing, health.last_error = 0, False, ""
        health.alerts_sent.clear()
        mailbox_state.update(self.store, mb.name, failures=0, failing=0, last_error="")
        if was_failing:
            self._status()

    async def _failed(self, mb: Mailbox, health: Health, logger, kind: str, message: str) -> None:
        health.failures += 1
        health.last_error = message
        logger.warning(
            "mailbox_connection_failed", kind=kind, error=message, attempt=health.failures
        )
        loud = (
            kind in ("auth", "tls", "secret", "stalled", "config")
            or health.failures >= self.config.daemon.alert_after_failures
        )
        fields: dict[str, object] = {
            "failures": health.failures,
            "last_error": message[:500],
            "state": "failing" if loud else "connecting",
        }
        if loud and not health.failing:
            health.failing = True
            fields["failing"] = 1
            fields["failing_since"] = mailbox_state.now_text()
            logger.error("mailbox_failing", kind=kind, error=message, failures=health.failures)
            self._alert(mb, kind, message)
        mailbox_state.update(self.store, mb.name, **fields)
        health.state = str(fields["state"])
        self._status()
        if kind in ("auth", "tls", "secret", "config"):
            self._maybe_ready()  # systemd should see us running and failing loudly, not hanging in start

    def _alert(self, mb: Mailbox, kind: str, message: str) -> None:
        """A mail to the operator, queued in the outbox like any other (once per failing spell)."""
        delivering.mailbox_event(
            self.store,
            self.rules.config,
            True,
            mb,
            kind=kind,
            error=message,
            failures=self.health[mb.name].failures,
        )
        now = datetime.now(UTC)
        self._queue_alert(
            alerts.mailbox_failing(self.config, mb, kind, message, now, secrets.token_hex(8))
        )

    def _recovered(self, mb: Mailbox, health: Health, logger) -> None:
        """A mailbox that was failing works again: said in the log, and the all-clear mailed."""
        row = self.store.conn.execute(
            "SELECT failing_since FROM mailbox_state WHERE mailbox = ?", (mb.name,)
        ).fetchone()
        since = row[0] if row else None
        logger.info("mailbox_recovered", failures=health.failures, failing_since=since)
        delivering.mailbox_event(
            self.store, self.rules.config, False, mb, since=since, failures=health.failures
        )
        now = datetime.now(UTC)
        self._queue_alert(
            alerts.mailbox_recovered(
                self.config, mb, since, health.failures, now, secrets.token_hex(8)
            )
        )

    def _queue_alert(self, alert) -> None:
        if alert is not None:
            self.store.queue_alert(alert, datetime.now(UTC))
            self.outbox_wake.set()

    def _set(self, mb: Mailbox, health: Health, state: str) -> None:
        if health.state != state and not (health.failing and state == "connecting"):
            health.state = state
            mailbox_state.update(self.store, mb.name, state=state)
            self._status()

    def _maybe_ready(self) -> None:
        if not self.ready_sent and all(h.logged_in_once or h.failing for h in self.health.values()):
            self.ready_sent = True
            self.notifier.ready()
            self.log.info("daemon_ready")
        self._status()

    def _status(self) -> None:
        parts = []
        for name, h in self.health.items():
            parts.append(f"{name}: {'FAILING ' + h.last_error[:80] if h.failing else h.state}")
        if self.relay_error:
            parts.append(f"relay: FAILING {self.relay_error[:80]}")
        self.notifier.status("; ".join(parts) or "no mailboxes configured")

    # -- periodic work -------------------------------------------------------------
    async def _sla_checks(self) -> None:
        policies = sla_mod.load_policies(self.config.sla_dir)
        while not self.stop.is_set():
            async with self.lock:
                try:
                    result = tracking.check(
                        self.store, policies, datetime.now(UTC), sinks=self.rules.config.sinks
                    )
                    if result.warned or result.breached:
                        self.log.info(
                            "sla_checked", warned=len(result.warned), breached=len(result.breached)
                        )
                except Exception:  # noqa: BLE001 - a failed check is retried next time
                    self.log.exception("sla_check_failed")
                try:  # the same timer: the operator's daily digest of mail held for review
                    sent = review.queue_digest(self.store, self.config, datetime.now(UTC))
                    if sent is not None:
                        self.log.info("review_digest_queued", to=sent.to, subject=sent.subject)
                        self.outbox_wake.set()
                except Exception:  # noqa: BLE001 - tried again at the next check
                    self.log.exception("review_digest_failed")
            await self._sleep(self.config.daemon.sla_check_seconds)

    async def _stall_checks(self) -> None:
        """A mailbox that holds mail while nothing is filed for a while is failing too.

        The clock runs from the last batch filed (or the last look that found nothing
        waiting, or the start), never from a login: a server that takes every login and
        refuses every move is stalled.
        """
        limit = self.config.daemon.stalled_minutes * 60
        while not self.stop.is_set():
            await self._sleep(min(60.0, limit / 4))
            now = datetime.now(UTC)
            for row in mailbox_state.rows(self.store):
                health = self.health.get(row["mailbox"])
                if health is None or health.failing or not row.get("backlog"):
                    continue
                idle_for = (now - health.progress_at).total_seconds()
                if idle_for > limit:
                    mb = next(m for m in self.config.mailboxes if m.name == row["mailbox"])
                    await self._failed(
                        mb,
                        health,
                        self.log.bind(mailbox=mb.name),
                        "stalled",
                        f"{row['backlog']} message(s) waiting and nothing filed for {idle_for / 60:.0f} minutes",
                    )

    async def _outbox(self) -> None:
        """Send what the outbox holds; woken by new rows, else every `outbox_seconds`.

        While the relay fails, rounds back off (doubling up to `backoff_max_seconds`) and new
        rows do not wake it: each round is a login attempt, and a relay that sees failed
        logins in a burst may lock the account.
        """
        assert self.config.smtp is not None
        sender = outbox.Sender(self.config.smtp, self.config.support_address)
        every = self.config.daemon.outbox_seconds
        failed_rounds = 0
        while not self.stop.is_set():
            self.outbox_wake.clear()
            full = False
            try:
                result = await outbox.drain(
                    self.store, sender, lock=self.lock, limit=ROUND, stop=self.stop
                )
                full = result.sent + result.deferred + result.failed >= ROUND
                if result.deferred:
                    self.log.info("outbox_waiting", deferred=result.deferred)
                if result.relay_error or result.reached:
                    failed_rounds = failed_rounds + 1 if result.relay_error else 0
                    if result.relay_error != self.relay_error:
                        self.relay_error = result.relay_error
                        self._status()
            except Exception:  # noqa: BLE001 - the next round tries again
                self.log.exception("outbox_error")
            if failed_rounds:
                await self._sleep(
                    min(self.config.daemon.backoff_max_seconds, every * 2 ** (failed_rounds - 1))
                )
                continue
            if full:  # more may be due: the next round at once, not after `outbox_seconds`
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(_either(self.stop, self.outbox_wake)), every)

    async def _sleep(self, seconds: float) -> None:
        """Wait `seconds`, or less when told to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval()
        if interval is None:
            return
        while not self.stop.is_set():
            self.notifier.watchdog()
            await self._sleep(interval)


async def _either(a: asyncio.Event, b: asyncio.Event) -> None:
    """Until either event is set."""
    waits = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def run(config_path: Path | None) -> int:
    """Load, refuse to start on a broken configuration or beside another daemon on the same
    database (daemon_lock.AlreadyRunning), then serve until told to stop."""
    config = load_config(config_path)
    held = daemon_lock.acquire(config.db)
    try:
        store = Store(config.db, config.ticket_prefix)
        contacts = contacts_store.load(store)
        store.close()
        rules = Rules.load(config, contacts)
        notifier = Notifier.from_env()

        async def main() -> int:
            daemon = Daemon(config_path, config, rules, notifier)
            return await daemon.run()

        return asyncio.run(main())
    finally:
        held.release()
