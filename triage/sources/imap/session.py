"""`ImapSession`: one IMAP mailbox, from login to the acknowledgement of each message.

The parts of a session live in their own modules and share one connection:
connection (TCP, TLS, login, timeouts), folders (namespace, our folders, SELECT),
reading (search, fetch), filing (move, flag, delete after the commit) and
waiting (IDLE or poll). Nothing here decides anything about a message.
"""

from __future__ import annotations

from triage.sources.imap.filing import Filing
from triage.sources.imap.folders import Folders, Selected
from triage.sources.imap.reading import Reading
from triage.sources.imap.waiting import Waiting


class ImapSession(Waiting, Filing, Reading, Folders):
    """A logged-in connection with one folder selected: a `triage.sources.base.Source`."""

    async def open(self, *, folders: bool = True) -> Selected:
        """Connect, log in, make sure the folders we move to exist, select the watched folder.

        folders=False skips the folders' check (a LIST each, a CREATE for one missing): for
        a mailbox polled in turn, whose folders an earlier session of this daemon found.
        """
        await self.connect()
        mb = self.mailbox
        self.namespace = await self._namespace()
        if mb.after == "move" and folders:
            for key in ("processed_folder", "filtered_folder", "review_folder", "errors_folder"):
                await self._ensure_folder(key, getattr(mb, key))
        return await self._select()
