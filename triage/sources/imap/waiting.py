"""Waiting for new mail: IMAP IDLE, renewed, or a poll interval when IDLE is off or missing.

Mail announced while a batch was handled (an EXISTS in the answer to another
command, seen by the connection) ends the wait at once: IDLE would not announce
it again.
"""

from __future__ import annotations

import asyncio

import aioimaplib

from triage.sources.imap.connection import Connection, ImapError


class Waiting(Connection):
    """The IDLE and polling wait of a session."""

    async def wait(self, stop: asyncio.Event) -> bool:
        """Until new mail may be there: IDLE (renewed), or a poll interval. False when stopping."""
        assert self.client is not None
        if stop.is_set():
            return False
        if self.arrived:  # announced while we were busy: IDLE would not announce it again
            return True
        if "IDLE" not in self.capabilities or not self.mailbox.use_idle:
            await _first(stop.wait(), self.lost.wait(), timeout=self.mailbox.poll_seconds)
            self._check_lost()
            return not stop.is_set()
        idle = await self._timed(self.client.idle_start(timeout=self.mailbox.idle_seconds))
        try:
            await _first(
                self.client.wait_server_push(timeout=self.mailbox.idle_seconds + 5),
                stop.wait(),
                self.lost.wait(),
                timeout=self.mailbox.idle_seconds + 10,
            )
        finally:
            if not self.lost.is_set():
                self.client.idle_done()
                try:
                    await asyncio.wait_for(idle, self.mailbox.timeout)
                except (TimeoutError, aioimaplib.Abort) as exc:
                    raise ImapError("connect", f"IDLE did not end: {exc}") from None
        self._check_lost()
        return not stop.is_set()


async def _first(*awaitables, timeout: float) -> None:
    """Wait until the first of `awaitables` finishes (or `timeout`), cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        for task in tasks:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: a timeout in a cancelled waiter is not an error
