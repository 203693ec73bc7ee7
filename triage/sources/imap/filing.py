"""Acknowledging: after the commit, each message is moved, flagged or deleted by outcome.

In move mode a message may already be in its folder (a server that crashed
after answering MOVE, a client stopped between COPY and EXPUNGE): `already_filed`
says so, and only the copy left behind is removed.
"""

from __future__ import annotations

import re

from triage.sources.base import OUTCOMES
from triage.sources.imap.connection import ImapError, quote
from triage.sources.imap.folders import Folders


class Filing(Folders):
    """The commands that file messages once their rows are committed."""

    async def already_filed(self, outcome: str, message_ids: list[str]) -> set[str]:
        """Which of `message_ids` the folder for `outcome` holds already (move mode).

        Mail can be back in the watched folder after it was filed: a server that
        crashed after answering MOVE may bring it back, and a client stopped
        between COPY and EXPUNGE leaves it there. Filing it again would make a
        second copy. Looks read-only in the target folder, then selects the
        watched folder again; when unsure, says "not filed" (a copy too many,
        never a message too few).
        """
        assert self.client is not None
        wanted = [m for m in message_ids if m.isascii() and m.isprintable()][:500]
        if self.mailbox.after != "move" or not wanted:
            return set()
        found: set[str] = set()
        watched = self.selected_uidvalidity
        response = await self._timed(self.client.examine(quote(self.folder(self._target(outcome)))))
        try:
            if response.result == "OK":
                for mid in wanted:
                    hit = await self._timed(
                        self.client.uid_search("HEADER", "Message-ID", quote(mid), charset=None)
                    )
                    if hit.result == "OK" and any(
                        re.search(rb"\d", bytes(line)) for line in hit.lines[:-1]
                    ):
                        found.add(mid)
        finally:
            selected = await self._select()
            if watched not in (None, selected.uidvalidity):
                raise ImapError("protocol", f"{self.mailbox.folder}: UIDVALIDITY changed")
        return found

    def _target(self, outcome: str) -> str:
        mb = self.mailbox
        return {
            "processed": mb.processed_folder,
            "filtered": mb.filtered_folder,
            "review": mb.review_folder,
            "errors": mb.errors_folder,
        }[outcome]

    async def ack(self, uids: list[int], outcome: str) -> None:
        """Move, flag or delete `uids` after their commit; `outcome` picks the folder.

        "filed": the mail is in its folder already (see `already_filed`); the
        copy left in the watched folder is removed.
        """
        assert self.client is not None and outcome in OUTCOMES
        if not uids:
            return
        mb = self.mailbox
        uid_set = ",".join(map(str, uids))
        if mb.after == "flag":
            await self._ok(
                self.client.uid("store", uid_set, "+FLAGS", f"(\\Seen {mb.keyword})"), "UID STORE"
            )
            return
        if mb.after == "move" and outcome != "filed":
            target = quote(self.folder(self._target(outcome)))
            if "MOVE" in self.capabilities:
                await self._ok(self.client.uid("move", uid_set, target), "UID MOVE")
                return
            await self._ok(self.client.uid("copy", uid_set, target), "UID COPY")
        await self._ok(
            self.client.uid("store", uid_set, "+FLAGS.SILENT", "(\\Deleted)"), "UID STORE"
        )
        if "UIDPLUS" in self.capabilities:
            await self._ok(self.client.uid("expunge", uid_set), "UID EXPUNGE")
        else:
            await self._ok(self.client.expunge(), "EXPUNGE")
