"""What a source of mail is: anything that yields (handle, bytes) batches and acknowledges
outcomes after the commit (ARCHITECTURE.md, "Data flows one way").

A source decides nothing about a message. Its caller drives it the same way
whatever it is (the daemon's mailbox loop does this with an IMAP session):

    opened = await source.open()
    while True:
        handles = await source.unprocessed()
        batch, left = await source.fetch(handles[:100], max_bytes, budget)
        ...                                   # analyse, decide, one transaction
        await source.ack(committed_handles, outcome)    # only after the commit
        if not await source.wait(stop):       # new mail may be there, or stop
            break
    await source.close()

A handle is whatever the source acknowledges by: an IMAP UID, a Graph message id,
a file's position in a replay. A message whose bytes are not fetched (over
`max_bytes`, unreadable) still comes back in the batch, with `raw` None, so it
is recorded and acknowledged like the rest; a crash before `ack` fetches it
again, and the message key makes that a duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, TypeVar, runtime_checkable

# Where an acknowledged message goes: the folder of its outcome, or "filed" when the
# folder holds it already and only the copy left in the watched folder is removed.
OUTCOMES = ("processed", "filtered", "review", "errors", "filed")

H = TypeVar("H")
H_co = TypeVar("H_co", covariant=True)


@runtime_checkable
class Message(Protocol[H_co]):
    """One message of a batch: its handle, its size, and its bytes (None: not fetched)."""

    @property
    def handle(self) -> H_co: ...

    @property
    def size(self) -> int: ...

    @property
    def raw(self) -> bytes | None: ...


@runtime_checkable
class Source(Protocol[H]):
    """A mailbox, a folder of files, a Graph folder: batches in, acknowledgements out."""

    async def open(self) -> object:
        """Connect and get ready; returns what the source reports on opening (IMAP: SELECT)."""
        ...

    async def unprocessed(self) -> Sequence[H]:
        """Handles of the messages still to process, oldest first."""
        ...

    async def fetch(
        self, handles: Sequence[H], max_bytes: int, budget: int | None = None
    ) -> tuple[Sequence[Message[H]], Sequence[H]]:
        """(batch, left over): `handles` fetched in order, bytes within `max_bytes` each.

        With a `budget`, the bytes fetched add up to at most that (one message at
        least); the handles beyond it come back untouched, for the next batch.
        """
        ...

    async def already_filed(self, outcome: str, message_ids: Sequence[str]) -> set[str]:
        """Which of these Message-IDs the place for `outcome` holds already (duplicates)."""
        ...

    async def ack(self, handles: Sequence[H], outcome: str) -> None:
        """File `handles` by `outcome` (one of OUTCOMES); called only after their commit."""
        ...

    async def wait(self, stop: asyncio.Event) -> bool:
        """Until new mail may be there; False when stopping or when no more will come."""
        ...

    async def close(self) -> None:
        """Let go of the connection, best effort and bounded."""
        ...
