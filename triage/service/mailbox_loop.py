"""The daemon's loop for one mailbox: connect, fetch, analyse, record, then file on the server.

One task per mailbox runs `_mailbox`: a session at a time, reconnecting with exponential
backoff and jitter. Fetching, parsing (in the worker pool) and writing overlap by up to
AHEAD batches; a message is moved, flagged or deleted on the server only after the commit
that holds it. A mixin of `Daemon` (triage/service/daemon.py), which holds the state named
below; health and timers are its siblings in health.py and timers.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from structlog.typing import FilteringBoundLogger

from triage.config import Config
from triage.config.endpoints import Mailbox
from triage.core.pipeline import Action, Analysis, Decision, Rules
from triage.desk.snapshot import Live
from triage.engine.batch import log_decision, run_batch
from triage.engine.pool import Pool, Task
from triage.engine.pool import unreadable as _quarantine
from triage.service.connections import Gates
from triage.service.health import Health
from triage.sources.files import Item
from triage.sources.imap import Fetched, ImapError, ImapSession
from triage.store import mailboxes as mailbox_state
from triage.store import messages
from triage.store.sqlite import Store

OUTCOME = {
    Action.TICKET: "processed",
    Action.APPEND: "processed",
    Action.FILTERED: "filtered",
    Action.REVIEW: "review",
    Action.QUARANTINED: "errors",
}

AHEAD = 1  # batches fetched and with the workers beyond the one being written (2 was no faster)
BATCH_BYTES = 64 * 1024 * 1024  # message bytes per batch, so memory stays bounded


@dataclass(frozen=True, slots=True)
class _Batch:
    """One fetched batch, handed to the workers, not yet written."""

    uids: list[int]
    fetched: list[Fetched]
    sources: list[str]
    tasks: list[Task]
    seen: datetime | None = None  # when it was fetched: arrival where the server gives none


class MailboxLoop:
    """`Daemon`'s mailbox tasks; uses its health (`_set`, `_filed`, `_failed`,
    `_maybe_ready`) and `_sleep`."""

    config_path: Path | None
    config: Config
    rules: Rules  # replaced by a reload, read under `lock`
    store: Store
    log: FilteringBoundLogger
    analyser: Pool
    health: dict[str, Health]
    lock: asyncio.Lock
    stop: asyncio.Event
    outbox_wake: asyncio.Event
    live: Live
    gates: Gates  # connection slots and login gates per server

    async def _mailbox(self, mb: Mailbox) -> None:
        """Sessions one after another until the daemon stops, each under a connection slot of
        the mailbox's server (connections.Gates): a watched mailbox holds its slot for the
        session (IDLE), a polled one for one turn, then waits `poll_seconds` for the next."""
        health = self.health[mb.name]
        logger = self.log.bind(mailbox=mb.name)
        polled = self.gates.polled(mb)
        delay = 1.0
        while not self.stop.is_set():
            if polled:
                self._set(mb, health, "polled")  # waiting for its turn, no connection open
            async with self.gates.slot(mb):
                if self.stop.is_set():
                    break
                worked = await self._session(mb, health, logger, turn=polled)
            if self.stop.is_set():
                break
            if polled and worked:
                self._set(mb, health, "polled")
                await self._sleep(mb.poll_seconds)
                delay = 1.0
                continue
            delay = await self._back_off(health, delay, logger)
        self._set(mb, health, "stopped")

    async def _session(self, mb: Mailbox, health: Health, logger, *, turn: bool) -> bool:
        """One connection: log in (under the server's login gate), then serve until stopped
        (or, for a turn, until what waits is filed). False when it failed."""
        session = ImapSession(mb)
        health.filed = False
        try:
            self._set(mb, health, "connecting")
            async with self.gates.login(mb):
                if self.stop.is_set():
                    return True
                # a turn after one that worked: its folders are there (a move fails if not,
                # and the next session looks again)
                selected = await session.open(folders=not (turn and health.folders_found))
            health.folders_found = True
            if not (turn and health.logged_in_once):  # a turn a minute is not news
                logger.info(
                    "mailbox_connected",
                    host=mb.host,
                    uidvalidity=selected.uidvalidity,
                    exists=selected.exists,
                    polled=turn,
                )
            # A login is not health: the failure count and the backoff go on until this
            # session files mail (_filed). Reset here, a server that takes the login but
            # refuses every move was retried about once a second and never reported.
            health.logged_in_once = True
            if mb.oauth:
                self.live.token(mb.name, session.token_expires)
            mailbox_state.update(self.store, mb.name, last_ok_at=mailbox_state.now_text())
            self._maybe_ready()
            await self._serve(mb, session, selected, logger, turn=turn)
            return True
        except ImapError as exc:
            health.folders_found = False
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
        return False

    async def _back_off(self, health, delay: float, logger) -> float:
        """Wait before connecting again, IMAP or Graph: exponential backoff with jitter,
        bounded (never a busy loop); returns the delay for the next fault."""
        if health.filed:
            delay = 1.0  # this session worked: a new fault starts the backoff again
        wait = min(self.config.daemon.backoff_max_seconds, delay) * random.uniform(0.5, 1.0)
        logger.info("mailbox_reconnect_scheduled", seconds=round(wait, 1), attempt=health.failures)
        await self._sleep(wait)
        return min(self.config.daemon.backoff_max_seconds, delay * 2)

    async def _serve(
        self, mb: Mailbox, session: ImapSession, selected, logger, *, turn: bool = False
    ) -> None:
        """Fetch and file what waits, then wait for more (IDLE or a poll) until stopped; a
        turn (`turn`) returns once what waited is filed."""
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
            if self.stop.is_set() or turn:
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
        submitted = self.analyser.submit(readable)
        return _Batch(uids, fetched, sources, submitted, datetime.now(UTC))

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
            # Ingest latency, once per batch: arrival (the server's date, else when it was
            # fetched) to the commit that holds the message.
            stored = datetime.now(UTC)
            self.live.observe_batch((f.arrived or batch.seen for f in batch.fetched), stored)
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
            stored = messages.action_of(self.store, d.message_key)
            action = Action(stored) if stored else Action.TICKET
            return OUTCOME.get(action, "processed")
        return OUTCOME[d.action]
