"""The daemon's loop for one Microsoft Graph mailbox: the delta query in, the same engine after.

The Graph counterpart of mailbox_loop.py and a mixin of `Daemon` beside it: one task per
Graph mailbox, a session at a time, reconnecting with the same backoff, the same health
(failing, recovered, alerts) and the same stop. Each page of the folder's delta query is
fetched, analysed in the worker pool, written and filed through `MailboxLoop._process`, the
very path IMAP batches take; only then is the page's link stored as the mailbox's ledger
(`mailbox_state.delta_link`), so a crash repeats at most one page, whose messages the message
key recognises. Change notifications, when configured, only wake the loop early: the delta
query every `poll_seconds` stays the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from triage.service.mailbox_loop import BATCH_BYTES, MailboxLoop, _Batch
from triage.sources.files import Item
from triage.sources.graph import GraphMailbox, GraphSession, Page
from triage.sources.graph_auth import GraphError, TokenSource
from triage.store import mailboxes as mailbox_state

# GraphError kinds as the health keeping knows them; sent_maybe is the sender's only.
_KINDS = {"auth", "secret", "connect", "config", "throttled", "protocol"}


class GraphLoop(MailboxLoop):
    """`Daemon`'s Graph mailbox tasks; uses the same health and `_process` as IMAP's."""

    async def _graph_mailbox(self, mb: GraphMailbox) -> None:
        health = self.health[mb.name]
        logger = self.log.bind(mailbox=mb.name)
        # kept across sessions: msal's token cache; each token's expiry goes to the metrics
        tokens = TokenSource(mb.credentials, lambda expires: self.live.token(mb.name, expires))
        delay = 1.0
        while not self.stop.is_set():
            session = GraphSession(mb, tokens)
            keeper: asyncio.Task | None = None
            notes = None
            health.filed = False
            try:
                self._set(mb, health, "connecting")
                opened = await session.open()
                logger.info("mailbox_connected", host=mb.host, user=mb.user, exists=opened.total)
                health.logged_in_once = True
                mailbox_state.update(
                    self.store, mb.name, last_ok_at=mailbox_state.now_text(), backlog=opened.total
                )
                self._maybe_ready()
                if mb.notify_url and mb.notify_listen:
                    notes, keeper = await self._notifications(mb, session, logger)
                await self._graph_serve(mb, session, logger)
            except GraphError as exc:
                kind = exc.kind if exc.kind in _KINDS else "connect"
                await self._failed(mb, health, logger, kind, _located(self, exc))
            except (TimeoutError, OSError, ConnectionError) as exc:
                await self._failed(mb, health, logger, "connect", f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # noqa: BLE001 - never crash the daemon on one mailbox
                logger.exception("mailbox_error")
                await self._failed(mb, health, logger, "internal", f"{type(exc).__name__}: {exc}")
            finally:
                if keeper is not None:
                    keeper.cancel()
                    with contextlib.suppress(BaseException):
                        await keeper
                if notes is not None:
                    with contextlib.suppress(Exception):
                        await notes.stop()
                await session.close()
            if self.stop.is_set():
                break
            delay = await self._back_off(health, delay, logger)
        self._set(mb, health, "stopped")

    async def _graph_serve(self, mb: GraphMailbox, session: GraphSession, logger) -> None:
        """Rounds of the delta query from the stored link, then a wait, until told to stop."""
        health = self.health[mb.name]
        while not self.stop.is_set():
            self._set(mb, health, "fetching")
            assert session.opened is not None
            scope = f"{mb.user.lower()}/{session.opened.folder_id}"
            link = mailbox_state.delta_link(self.store, mb.name, scope)
            warned = False
            async with contextlib.aclosing(session.changes(link)) as pages:
                async for page in pages:
                    if page.resynced and not warned:  # Graph forgot the link: the whole folder
                        logger.warning("delta_resync", resyncs=session.resyncs)
                        warned = True
                    await self._graph_page(mb, session, page, logger)
                    # Only now: every message of the page is committed and filed.
                    mailbox_state.update(
                        self.store, mb.name, delta_link=page.resume, delta_scope=scope
                    )
                    if self.stop.is_set():
                        return
            mailbox_state.update(self.store, mb.name, backlog=0)
            self._filed(mb)  # nothing waits: as good as filed
            self._set(mb, health, "idle")
            if not await session.wait(self.stop):
                return

    async def _graph_page(
        self, mb: GraphMailbox, session: GraphSession, page: Page, logger
    ) -> None:
        """Fetch, analyse, record and file one page's messages, in batches of BATCH_BYTES."""
        todo = list(page.ids)
        while todo:
            fetched, left = await session.fetch(todo, self.config.max_bytes, budget=BATCH_BYTES)
            done = todo[: len(todo) - len(left)]
            sources = [f"graph:{mb.name}/{f.id}" for f in fetched]
            readable = [
                Item(s, f.raw) for s, f in zip(sources, fetched, strict=True) if f.raw is not None
            ]
            submitted = self.analyser.submit(readable)
            batch = _Batch(done, fetched, sources, submitted, datetime.now(UTC))
            try:
                await self._process(mb, session, batch, logger)
            finally:
                for future, _part in batch.tasks:
                    future.cancel()  # a no-op once collected; frees a stuck worker's slot
            self._filed(mb)
            todo = left
            mailbox_state.update(self.store, mb.name, backlog=len(todo))

    async def _notifications(self, mb: GraphMailbox, session: GraphSession, logger):
        """Listen for Graph's change notifications and keep the subscription, as a hint only."""
        from triage.sources.graph_notify import Notifications

        assert session.opened is not None and mb.notify_url and mb.notify_listen
        notes = Notifications(
            session.client,
            session._user.removeprefix("users/"),
            session.opened.folder_id,
            mb.notify_url,
            mb.notify_listen,
            session.hint,
        )
        try:
            await notes.start()
        except OSError as exc:  # the port is taken: polling goes on, said loudly in the log
            logger.error("notify_listen_failed", listen=mb.notify_listen, error=str(exc))
            return None, None
        keeper = asyncio.create_task(notes.keep(self.stop), name=f"notify:{mb.name}")
        return notes, keeper


def _located(loop: GraphLoop, exc: GraphError) -> str:
    """The error, with the configuration file named for a configuration problem."""
    if exc.kind == "config" and loop.config_path is not None:
        return f"{loop.config_path}: {exc}"
    return str(exc)
