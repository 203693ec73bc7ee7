"""Waiting for new mail: IMAP IDLE, renewed, or a poll interval when IDLE is off or missing.

Mail announced while a batch was handled (an EXISTS in the answer to another
command, seen by the connection) ends the wait at once: IDLE would not announce
it again.
"""

from __future__ import annotations

import asyncio
import re

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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.mailbox.idle_seconds + 10
        try:
            while True:
                push = asyncio.ensure_future(
                    self.client.wait_server_push(timeout=self.mailbox.idle_seconds + 5)
                )
                await _first(
                    push, stop.wait(), self.lost.wait(), timeout=max(0.0, deadline - loop.time())
                )
                if not (push.done() and not push.cancelled() and push.exception() is None):
                    break
                if not _only_changes(push.result()) or loop.time() >= deadline:
                    break
                # A flag change, an expunge or a keepalive: no new mail, keep idling.
        finally:
            if not self.lost.is_set():
                self.client.idle_done()
                try:
                    await asyncio.wait_for(idle, self.mailbox.timeout)
                except (TimeoutError, aioimaplib.Abort) as exc:
                    raise ImapError("connect", f"IDLE did not end: {exc}") from None
        self._check_lost()
        return not stop.is_set()


# What a server may push during IDLE that announces no new mail: a message's flags changed,
# a message was expunged, the folder's flags, a keepalive ("* OK Still here").
_CHANGE = re.compile(r"^(?:\* )?(?:\d+ (?:FETCH|EXPUNGE)\b|FLAGS\b|OK\b)", re.IGNORECASE)


def _only_changes(lines: object) -> bool:
    """True when every pushed line is a change that announces no new mail; anything else
    (EXISTS, RECENT, BYE, the end of IDLE, a line not understood) ends the wait."""
    if not isinstance(lines, list | tuple) or not lines:
        return False
    for line in lines:
        text = line.decode("ascii", "replace") if isinstance(line, bytes) else str(line)
        if not _CHANGE.match(text.strip()):
            return False
    return True


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
