"""One Microsoft 365 mailbox folder over Microsoft Graph: delta query in, move/mark/category out.

The Graph counterpart of sources/imap.py, with the same shape for the daemon: `open`, then
`changes(ledger)` yields pages of message ids (the ledger being the folder's delta link, kept
by the caller like UIDs), `fetch` gets their raw MIME through `/messages/{id}/$value`, `ack`
files them only after their commit, `wait` sleeps until the next poll or a change
notification's hint. Nothing here decides anything about a message.

Why delta: it lists what is new in the folder since the last state token, page after page,
so a backlog of any size is walked one bounded page at a time and a restart resumes from the
last page whose messages were all committed. A token Graph no longer knows (410 Gone) starts
a full round over the folder: in move mode it holds only what is unprocessed; otherwise the
message key makes the repeats no-ops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote, urlsplit

from triage.sources.graph_auth import Credentials, GraphError, TokenSource
from triage.sources.graph_http import GRAPH_URL, GraphClient, Retries

OUTCOMES = ("processed", "filtered", "review", "errors", "filed")
AFTER_MODES = ("move", "read", "category")
WELL_KNOWN = ("inbox", "archive", "junkemail", "deleteditems", "drafts", "sentitems")
PAGE_MAX = 1000  # Graph's largest odata.maxpagesize
_SELECT = "id,internetMessageId,isRead,categories,receivedDateTime"


@dataclass(frozen=True, slots=True)
class GraphMailbox:
    """A watched folder of a user or shared mailbox, and what to do with mail once stored."""

    name: str
    user: str  # the mailbox's address (UPN) or object id
    credentials: Credentials
    folder: str = "inbox"  # a well-known name or a path of display names ("Inbox/Support")
    after: str = "move"  # move | read | category
    processed_folder: str = "Triage/Processed"
    filtered_folder: str = "Triage/Filtered"
    errors_folder: str = "Triage/Errors"
    review_folder: str = "Triage/Review"
    category: str = "Triaged"
    graph_url: str = GRAPH_URL
    poll_seconds: float = 60.0
    batch: int = 100  # messages per delta page, and so the most ids held at once
    timeout: float = 30.0
    retries: Retries = Retries()
    notify_url: str | None = None  # change notifications: the public HTTPS URL Graph posts to
    notify_listen: str | None = None  # ... and where this process listens for them

    @property
    def username(self) -> str:
        """Who is read, under the name alerts and events use for an IMAP mailbox's login."""
        return self.user

    @property
    def host(self) -> str:
        """Where it is read from, as alerts and events name an IMAP server."""
        return urlsplit(self.graph_url).hostname or self.graph_url


@dataclass(frozen=True, slots=True)
class Fetched:
    id: str
    size: int
    raw: bytes | None  # None when over the size limit: never downloaded whole
    arrived: datetime | None = None  # receivedDateTime: when it came in

    @property
    def uid(self) -> str:
        """The handle `ack` takes, under the name the daemon's batches use for IMAP's."""
        return self.id


@dataclass(frozen=True, slots=True)
class Page:
    """Message ids to process, and the ledger to store once all of them are filed.

    `resume` is a nextLink inside a round or, on a round's last page, its deltaLink; either
    one, stored, makes the next `changes()` start after this page. `resynced`: Graph forgot
    the stored state (410 Gone) and this round lists the whole folder again.
    """

    ids: tuple[str, ...]
    resume: str
    last: bool
    resynced: bool = False


@dataclass
class Opened:
    folder_id: str
    total: int  # messages in the watched folder now
    targets: dict[str, str] = field(default_factory=dict)  # outcome -> folder id


class GraphSession:
    """The watched folder of one mailbox, through one Graph client."""

    def __init__(self, mailbox: GraphMailbox, tokens: TokenSource | None = None) -> None:
        self.mailbox = mailbox
        self.tokens = tokens or TokenSource(mailbox.credentials)
        self.client = GraphClient(
            self.tokens,
            mailbox.graph_url,
            ca_file=mailbox.credentials.ca_file,
            timeout=mailbox.timeout,
            retries=mailbox.retries,
        )
        self.opened: Opened | None = None
        self.hint = asyncio.Event()  # a change notification says: look now
        self._categories: dict[str, list[str]] = {}  # id -> categories, for this page's ids
        self._received: dict[str, datetime | None] = {}  # id -> receivedDateTime, same ids
        self.resyncs = 0

    @property
    def _user(self) -> str:
        return f"users/{quote(self.mailbox.user, safe='@')}"

    # -- opening ------------------------------------------------------------------------
    async def open(self) -> Opened:
        """Get a token, find the watched folder, make sure the folders moved to exist."""
        mb = self.mailbox
        await self.tokens.token()  # a refused grant says so now, with Microsoft's reason
        watched = await self._find(mb.folder, "folder")
        if watched is None:
            raise GraphError(
                "config",
                f"{mb.name}: folder {mb.folder!r} (folder) does not exist in {mb.user}; fix: "
                "name a well-known folder (inbox) or a path of folder names (Inbox/Support)",
            )
        opened = Opened(watched["id"], int(watched.get("totalItemCount") or 0))
        if mb.after == "move":
            for outcome in ("processed", "filtered", "review", "errors"):
                key = f"{outcome}_folder"
                opened.targets[outcome] = await self._ensure(key, getattr(mb, key))
        self.opened = opened
        return opened

    async def _find(self, path: str, key: str) -> dict | None:
        """A folder by well-known name or path of display names; None when a level is missing."""
        parts = [p for p in path.split("/") if p]
        if not parts:
            raise GraphError("config", f"{self.mailbox.name}: {key} is empty; fix: name a folder")
        found: dict | None = None
        if parts[0].lower() in WELL_KNOWN:
            answer = await self.client.request(
                "GET", f"{self._user}/mailFolders/{parts[0].lower()}"
            )
            found = answer.json()
            parts = parts[1:]
        for part in parts:
            found = await self._child(found["id"] if found else None, part)
            if found is None:
                return None
        return found

    async def _child(self, parent: str | None, name: str) -> dict | None:
        base = f"{self._user}/mailFolders"
        if parent is not None:
            base += f"/{quote(parent, safe='')}/childFolders"
        literal = name.replace("'", "''")
        answer = await self.client.request(
            "GET", f"{base}?$filter={quote(f'displayName eq {chr(39)}{literal}{chr(39)}', safe='')}"
        )
        for folder in answer.json().get("value", []):
            if str(folder.get("displayName", "")).lower() == name.lower():
                return folder
        return None

    async def _ensure(self, key: str, path: str) -> str:
        """The id of the folder at `path`, creating each missing level (another instance may
        create it at the same moment: 409 ErrorFolderExists is looked up again)."""
        parts = [p for p in path.split("/") if p]
        parent: str | None = None
        if parts and parts[0].lower() in WELL_KNOWN:
            parent = (await self._find(parts[0], key) or {}).get("id")
            parts = parts[1:]
        if not parts:
            raise GraphError(
                "config",
                f"{self.mailbox.name}: {key} = {path!r} names no folder of its own; fix: "
                'write a path such as "Triage/Processed"',
            )
        for part in parts:
            found = await self._child(parent, part)
            if found is None:
                base = f"{self._user}/mailFolders"
                if parent is not None:
                    base += f"/{quote(parent, safe='')}/childFolders"
                try:
                    answer = await self.client.request(
                        "POST", base, json={"displayName": part, "isHidden": False}
                    )
                    found = answer.json()
                except GraphError as exc:
                    if exc.code != "ErrorFolderExists":
                        raise GraphError(
                            "config",
                            f"{self.mailbox.name}: folder {path!r} ({key}) does not exist and "
                            f"Graph did not create it ({exc}); fix: create it in the mailbox, "
                            "or set the key to a folder that exists",
                        ) from None
                    found = await self._child(parent, part)
                    if found is None:
                        raise
            parent = found["id"]
        assert parent is not None
        return parent

    async def close(self) -> None:
        await self.client.close()

    # -- reading --------------------------------------------------------------------------
    def _first_link(self) -> str:
        assert self.opened is not None
        folder = quote(self.opened.folder_id, safe="")
        return (
            f"{self._user}/mailFolders/{folder}/messages/delta?changeType=created&$select={_SELECT}"
        )

    async def changes(self, ledger: str | None) -> AsyncIterator[Page]:
        """Pages of new message ids since `ledger` (None: the whole folder), to the round's end.

        Each page holds at most `batch` ids; only one page is held at a time. Messages already
        carrying our category (category mode) are left out: they were filed before."""
        link = ledger or self._first_link()
        resynced = False
        if ledger:
            try:
                self.client.url(ledger)
            except GraphError:  # stored for another Graph host (graph_url changed): start over
                link, resynced = self._first_link(), True
                self.resyncs += 1
        self._categories = {}
        self._received = {}
        prefer = {"Prefer": f"odata.maxpagesize={min(self.mailbox.batch, PAGE_MAX)}"}
        while True:
            try:
                answer = await self.client.request("GET", link, headers=prefer)
            except GraphError as exc:
                if exc.status != 410 or resynced:
                    raise
                # Graph forgot this state (410 Gone, syncStateNotFound): list the whole folder.
                resynced = True
                self.resyncs += 1
                link = self._first_link()
                continue
            body = answer.json()
            ids: list[str] = []
            for item in body.get("value", []):
                if "@removed" in item or not item.get("id"):
                    continue
                categories = [str(c) for c in item.get("categories") or []]
                if self.mailbox.after == "category" and self.mailbox.category in categories:
                    continue
                self._categories[item["id"]] = categories
                self._received[item["id"]] = _instant(item.get("receivedDateTime"))
                ids.append(item["id"])
            following = body.get("@odata.nextLink")
            final = body.get("@odata.deltaLink")
            if not following and not final:
                raise GraphError(
                    "protocol",
                    f"{self.mailbox.name}: a delta page with neither nextLink nor deltaLink",
                )
            yield Page(tuple(ids), following or final, following is None, resynced)
            if following is None:
                return
            link = following

    async def fetch(
        self, ids: list[str], max_bytes: int, budget: int | None = None
    ) -> tuple[list[Fetched], list[str]]:
        """(fetched, left over): the raw MIME of `ids`, four at a time (Outlook's limit).

        A message over `max_bytes` is not read past the limit (raw None, for quarantine); one
        gone since it was listed (moved by a person, or by us before a crash) is left out.
        With a `budget`, the bodies fetched add up to about that many bytes at most (one
        group of four at least): the rest are returned untouched for the next batch."""
        out: list[Fetched] = []
        total = 0
        todo = list(ids)
        while todo:
            if budget is not None and out and total >= budget:
                break
            group, todo = todo[:4], todo[4:]
            got = await asyncio.gather(*(self._mime(i, max_bytes) for i in group))
            for found in got:
                if found is not None:
                    out.append(found)
                    total += len(found.raw or b"")
        return out, todo

    async def _mime(self, message_id: str, max_bytes: int) -> Fetched | None:
        path = f"{self._user}/messages/{quote(message_id, safe='')}/$value"
        try:
            answer = await self.client.request("GET", path, limit=max_bytes)
        except GraphError as exc:
            if exc.status == 404:
                return None
            raise
        return Fetched(message_id, answer.size, answer.body, self._received.pop(message_id, None))

    # -- acknowledging --------------------------------------------------------------------
    async def already_filed(self, outcome: str, message_ids: list[str]) -> set[str]:
        """Always empty: a Graph move is one operation on one item, so no copy is left behind
        in the watched folder to find (the IMAP source needs this after COPY + EXPUNGE)."""
        return set()

    async def ack(self, ids: list[str], outcome: str) -> None:
        """Move, mark read or add the category, after the commit; one request per message,
        four at a time. A message already gone (404) is not an error: it was filed before."""
        assert outcome in OUTCOMES
        if not ids:
            return
        await asyncio.gather(*(self._ack_one(i, outcome) for i in ids))

    async def _ack_one(self, message_id: str, outcome: str) -> None:
        mb = self.mailbox
        path = f"{self._user}/messages/{quote(message_id, safe='')}"
        try:
            if mb.after == "move":
                assert self.opened is not None
                target = self.opened.targets["processed" if outcome == "filed" else outcome]
                await self.client.request("POST", f"{path}/move", json={"destinationId": target})
            elif mb.after == "read":
                await self.client.request("PATCH", path, json={"isRead": True})
            else:
                had = self._categories.pop(message_id, [])
                await self.client.request("PATCH", path, json={"categories": [*had, mb.category]})
        except GraphError as exc:
            if exc.status != 404:
                raise

    # -- waiting ----------------------------------------------------------------------------
    async def wait(self, stop: asyncio.Event) -> bool:
        """Until the next poll, or a change notification's hint; False when stopping."""
        if stop.is_set():
            return False
        if not self.hint.is_set():
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.hint.wait())]
            try:
                await asyncio.wait(
                    waiters, timeout=self.mailbox.poll_seconds, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for w in waiters:
                    w.cancel()
        self.hint.clear()
        return not stop.is_set()


def _instant(text: object) -> datetime | None:
    """Graph's ISO 8601 receivedDateTime ("2026-12-03T17:40:00Z"); None if absent or not one."""
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None
