"""Reading: which messages wait (UID SEARCH), and their bytes in bounded batches (UID FETCH).

Bodies are fetched with BODY.PEEK[], so nothing is marked read before it is
stored; sizes come first, so a message over the limit is never downloaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from triage.sources.imap.connection import Connection, ImapError, response_text

_FETCH_HEAD = re.compile(rb"^\d+ FETCH \((.*)$", re.DOTALL)
_UID = re.compile(rb"UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_LITERAL = re.compile(rb"\{(\d+)\}\s*$")
_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"')


@dataclass(frozen=True, slots=True)
class Fetched:
    """One message of a batch: its UID, its size, and its bytes when within the limit."""

    uid: int
    size: int
    raw: bytes | None  # None when over the size limit: never downloaded
    arrived: datetime | None = None  # the server's INTERNALDATE: when it came in

    @property
    def handle(self) -> int:
        """The UID: what `ack` takes back (`triage.sources.base.Source`)."""
        return self.uid


class Reading(Connection):
    """The search and fetch commands of a session."""

    async def unprocessed(self, after_uid: int = 0) -> list[int]:
        """UIDs still to process, ascending: all of them (move/delete) or those without our keyword."""
        assert self.client is not None
        criteria = ["UNKEYWORD", self.mailbox.keyword] if self.mailbox.after == "flag" else ["ALL"]
        if after_uid:
            criteria = ["UID", f"{after_uid + 1}:*", *criteria]
        self.arrived = False  # what is announced from now on may be missing from this answer
        response = await self._timed(self.client.uid_search(*criteria, charset=None))
        if response.result != "OK":
            raise ImapError("protocol", f"UID SEARCH failed: {response_text(response)}")
        uids: set[int] = set()
        for line in response.lines[:-1]:
            uids.update(int(n) for n in re.findall(rb"\d+", bytes(line)))
        # "n:*" always names the highest UID, even when it is below n.
        return sorted(u for u in uids if u > after_uid)

    async def fetch(
        self, uids: list[int], max_bytes: int, budget: int | None = None
    ) -> tuple[list[Fetched], list[int]]:
        """(fetched, left over): sizes first, then BODY.PEEK[] of those within `max_bytes`.

        The sizes come with each message's INTERNALDATE (its arrival, for the ingest-latency
        histogram): the same command and round trip, a few bytes a message.

        Peek: nothing is marked read. With a `budget`, the bodies fetched add up to
        at most that many bytes (at least one message is fetched): the UIDs beyond
        it are returned untouched, for the next batch, so a run of large messages
        cannot hold gigabytes in memory at once.
        """
        heads = await self._fetch(uids, "(UID RFC822.SIZE INTERNALDATE)")
        sizes = {uid: size for uid, size, _raw, _arrived in heads}
        arrivals = {uid: arrived for uid, _size, _raw, arrived in heads}
        taken, wanted, left, total = [], [], [], 0
        for uid in uids:
            size = sizes.get(uid, 0)
            downloaded = uid in sizes and size <= max_bytes
            if left or (budget is not None and taken and downloaded and total + size > budget):
                left.append(uid)
                continue
            taken.append(uid)
            if downloaded:
                wanted.append(uid)
                total += size
        bodies = (
            {uid: raw for uid, _, raw, _a in await self._fetch(wanted, "(UID BODY.PEEK[])")}
            if wanted
            else {}
        )
        fetched = [Fetched(u, sizes[u], bodies.get(u), arrivals[u]) for u in taken if u in sizes]
        return fetched, left

    async def _fetch(
        self, uids: list[int], parts: str
    ) -> list[tuple[int, int, bytes | None, datetime | None]]:
        assert self.client is not None
        response = await self._timed(self.client.uid("fetch", ",".join(map(str, uids)), parts))
        if response.result != "OK":
            raise ImapError("protocol", f"UID FETCH failed: {response_text(response)}")
        out: list[tuple[int, int, bytes | None, datetime | None]] = []
        lines = response.lines
        i = 0
        while i < len(lines):
            head = bytes(lines[i]) if isinstance(lines[i], bytes | bytearray) else b""
            i += 1
            found = _FETCH_HEAD.match(head)
            if not found:
                continue
            uid = _UID.search(head)
            size = _SIZE.search(head)
            literal = _LITERAL.search(head)
            raw = None
            date = _INTERNALDATE.search(head)
            if literal and i < len(lines):
                raw = bytes(lines[i])
                i += 1
                # the UID may follow the literal: "... BODY[] {n}" <data> " UID 7)"
                if uid is None and i < len(lines):
                    uid = _UID.search(bytes(lines[i]))
            if uid:
                n = int(size.group(1)) if size else len(raw or b"")
                out.append(
                    (int(uid.group(1)), n, raw, internaldate(date.group(1)) if date else None)
                )
        return out


def internaldate(text: bytes) -> datetime | None:
    """An IMAP date-time (RFC 3501: "17-Jul-1996 02:44:25 -0700"); None if it is not one."""
    try:
        return datetime.strptime(text.decode("ascii").strip(), "%d-%b-%Y %H:%M:%S %z")
    except (UnicodeDecodeError, ValueError):
        return None
