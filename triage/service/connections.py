"""How many IMAP connections the daemon opens to each server, and which mailboxes keep one.

`[daemon] max_imap_connections` bounds the connections open at once to one server (host and
port). While a server's mailboxes fit under the bound, each keeps its own connection and
IDLEs. Beyond it, the first mailboxes (in the order of the file) keep theirs and the rest are
*polled in turn*: a tenth of the bound (one at least) is left for them, and each turn logs in,
fetches and files what waits, logs out and gives the connection to the next, every
`poll_seconds` at most. Logins to one server are also limited (LOGINS_AT_ONCE), so a start or
a server's restart is a queue of logins, not a hundred TLS handshakes at once.

`plan` is pure (the same mailboxes and bound give the same plan); `Gates` holds the
semaphores that enforce it while the daemon runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from triage.config.endpoints import Mailbox

LOGINS_AT_ONCE = 4  # per server: TLS handshakes and logins in flight at once


def server_of(mb: Mailbox) -> str:
    """The server a mailbox is on, as the bound counts it: host (any case) and port."""
    return f"{mb.host.lower()}:{mb.port}"


@dataclass(frozen=True, slots=True)
class Server:
    """One server's share of the plan: who keeps a connection, who takes turns."""

    name: str  # host:port
    bound: int
    watched: tuple[str, ...]  # mailboxes with a connection of their own (IDLE)
    polled: tuple[str, ...]  # mailboxes that take turns over the connections left

    @property
    def turns(self) -> int:
        """Connections left for the polled mailboxes (0 when there are none)."""
        return self.bound - len(self.watched) if self.polled else 0

    def line(self) -> str:
        """What `triage check` says of this server."""
        count = len(self.watched) + len(self.polled)
        head = f"{self.name}: {count} mailbox(es), at most {self.bound} connection(s)"
        if not self.polled:
            return f"{head}: each keeps its own (IDLE)"
        return (
            f"{head}: {len(self.watched)} keep their own (IDLE), {len(self.polled)} polled in "
            f"turn over {self.turns} (each every poll_seconds at most; raise "
            "[daemon] max_imap_connections to IDLE on all)"
        )


def plan(mailboxes: Iterable[Mailbox], bound: int) -> dict[str, Server]:
    """Each server's plan, by host:port, for the IMAP mailboxes in config order."""
    if bound < 1:
        raise ValueError(f"bound must be at least 1, not {bound}")
    by_server: dict[str, list[str]] = {}
    for mb in mailboxes:
        by_server.setdefault(server_of(mb), []).append(mb.name)
    out = {}
    for name, names in by_server.items():
        if len(names) <= bound:
            out[name] = Server(name, bound, tuple(names), ())
            continue
        shared = max(1, bound // 10)
        keep = bound - shared
        out[name] = Server(name, bound, tuple(names[:keep]), tuple(names[keep:]))
    return out


class Gates:
    """The semaphores of a plan: `slot(mb)` is held while a connection to its server is open
    (a watched mailbox's whole session, a polled one's turn), `login(mb)` while it logs in."""

    def __init__(self, mailboxes: Iterable[Mailbox], bound: int) -> None:
        boxes = list(mailboxes)
        self.plan = plan(boxes, bound)
        self._server = {mb.name: server_of(mb) for mb in boxes}
        self._slots = {name: asyncio.Semaphore(s.bound) for name, s in self.plan.items()}
        self._logins = {name: asyncio.Semaphore(LOGINS_AT_ONCE) for name in self.plan}

    def polled(self, mb: Mailbox) -> bool:
        """This mailbox takes turns (it has no connection of its own)."""
        return mb.name in self.plan[self._server[mb.name]].polled

    def slot(self, mb: Mailbox) -> asyncio.Semaphore:
        return self._slots[self._server[mb.name]]

    def login(self, mb: Mailbox) -> asyncio.Semaphore:
        return self._logins[self._server[mb.name]]
