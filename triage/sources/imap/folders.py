"""Folders: where the account keeps them (NAMESPACE), that ours exist, and the one watched.

Configured folder names are written with "/"; the server's namespace turns them
into its own names (`triage.sources.imap.namespace`). A folder the server will
not create is a configuration problem, said at once with the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from triage.sources.imap.connection import Connection, ImapError, quote, response_text
from triage.sources.imap.namespace import Namespace, listed, same_folder

_SELECT_CODE = re.compile(rb"\[(UIDVALIDITY|UIDNEXT) (\d+)\]")
_EXISTS = re.compile(rb"^(\d+) EXISTS")


@dataclass(frozen=True, slots=True)
class Selected:
    """What SELECT said of the watched folder."""

    uidvalidity: int
    uidnext: int | None
    exists: int


class Folders(Connection):
    """The folder commands of a session: NAMESPACE, LIST, CREATE, SELECT."""

    async def _namespace(self) -> Namespace:
        """The personal namespace (RFC 2342), or LIST's delimiter on a server without NAMESPACE.

        Cyrus, Courier and many hosting set-ups keep a user's folders under "INBOX.": there a
        CREATE "Triage.Processed" was refused, and every move after it failed.
        """
        assert self.client is not None
        if "NAMESPACE" in self.capabilities:
            response = await self._timed(self.client.namespace())
            if response.result == "OK":
                for line in response.lines[:-1]:
                    found = Namespace.from_response(bytes(line))
                    if found is not None:
                        return found
        response = await self._timed(self.client.list('""', '""'))
        for _flags, delimiter, _name in listed(response.lines):
            return Namespace.from_delimiter(delimiter)
        return Namespace.from_delimiter("/")

    def folder(self, name: str) -> str:
        """A configured folder name (written with /) as the server names it."""
        return self.namespace.full_name(name)

    async def _ensure_folder(self, key: str, name: str) -> None:
        """Create `name` (and the levels above it) unless LIST shows it; fail if it is still missing.

        A CREATE the server refuses is a configuration problem, said at once with the fix:
        ignored, it came back as a failed move on every batch, for ever.
        """
        assert self.client is not None
        full = self.folder(name)
        if await self._exists(full):
            return
        said = ""
        for level in self.namespace.levels(full):
            response = await self._timed(self.client.create(quote(level)))
            if response.result != "OK":
                said = response_text(response)
        if await self._exists(full):
            return
        ns = self.namespace
        where = f"under {ns.prefix!r}" if ns.prefix else "at the top level"
        raise ImapError(
            "config",
            f"{self.mailbox.name}: folder {full!r} ({key} = {name!r}) does not exist and the "
            f"server did not create it ({said or 'no reason given'}); this account's folders "
            f"are {where}, levels joined by {ns.delimiter!r}; fix: create {full!r} on the "
            f"server, or set {key} to a folder that exists (a name written with / is placed "
            "under the server's prefix)",
        )

    async def _exists(self, full: str) -> bool:
        """LIST says `full` is there and can hold mail."""
        assert self.client is not None
        response = await self._timed(self.client.list('""', quote(full)))
        return response.result == "OK" and any(
            same_folder(name, full) and "\\noselect" not in flags and "\\nonexistent" not in flags
            for flags, _delimiter, name in listed(response.lines)
        )

    async def _select(self) -> Selected:
        assert self.client is not None
        folder = self.folder(self.mailbox.folder)
        response = await self._timed(self.client.select(quote(folder)))
        if response.result != "OK":
            raise ImapError(
                "protocol",
                f"{self.mailbox.name}: cannot select {folder}: {response_text(response)}",
            )
        uidvalidity = uidnext = None
        exists = 0
        for line in response.lines:
            data = bytes(line)
            for code, value in _SELECT_CODE.findall(data):
                if code == b"UIDVALIDITY":
                    uidvalidity = int(value)
                else:
                    uidnext = int(value)
            found = _EXISTS.match(data)
            if found:
                exists = int(found.group(1))
        if uidvalidity is None:
            raise ImapError("protocol", f"{self.mailbox.name}: SELECT gave no UIDVALIDITY")
        self.selected_uidvalidity = uidvalidity
        return Selected(uidvalidity, uidnext, exists)
