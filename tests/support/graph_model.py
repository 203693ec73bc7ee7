"""The mail held by the Graph stand-in: mailboxes, folders, messages and their change logs.

Plain data and pure functions; no HTTP. The stand-in (tests/support/graph_standin.py) serves it.

Modelled on Microsoft's documentation of Outlook mail in Graph:
- a message id changes when the message moves to another folder (ids are not immutable unless
  the client asks for immutable ids, which triage does not);
- a folder has well-known names (inbox, sentitems, deleteditems, drafts, archive, junkemail);
- delta is per folder: a first round lists what is in the folder, later rounds list what was
  created, updated or removed since the state token; a removed message comes back as
  `{"id": ..., "@removed": {"reason": "deleted"}}`. A state token is opaque to the client.
"""

from __future__ import annotations

import base64
import bisect
import email.parser
import email.policy
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

WELL_KNOWN = {
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "deleteditems": "Deleted Items",
    "drafts": "Drafts",
    "archive": "Archive",
    "junkemail": "Junk Email",
}


def graph_id(prefix: str = "AAMkA") -> str:
    """An id shaped like Exchange's: base64 with padding, so clients must escape it in URLs."""
    return prefix + base64.urlsafe_b64encode(secrets.token_bytes(46)).decode()


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Message:
    id: str
    folder_id: str
    raw: bytes
    entered: int  # the change number at which it entered its folder
    received: str
    internet_message_id: str
    subject: str
    is_read: bool = False
    categories: list[str] = field(default_factory=list)

    def resource(self, select: list[str] | None) -> dict:
        full = {
            "id": self.id,
            "receivedDateTime": self.received,
            "internetMessageId": self.internet_message_id,
            "subject": self.subject,
            "isRead": self.is_read,
            "categories": list(self.categories),
            "parentFolderId": self.folder_id,
        }
        out = {"@odata.type": "#microsoft.graph.message", "@odata.etag": f'W/"{self.entered}"'}
        for key, value in full.items():
            if select is None or key in select or key == "id":
                out[key] = value
        return out


@dataclass
class Folder:
    id: str
    name: str
    parent_id: str | None
    well_known: str | None = None
    members: dict[str, int] = field(default_factory=dict)  # message id -> entered
    order: list[tuple[int, str]] = field(default_factory=list)  # (entered, id), append-only
    log: list[tuple[int, str, str, int]] = field(default_factory=list)  # (n, id, kind, entered)

    def resource(self, mailbox: Mailbox) -> dict:
        children = [f for f in mailbox.folders.values() if f.parent_id == self.id]
        return {
            "id": self.id,
            "displayName": self.name,
            "parentFolderId": self.parent_id or mailbox.root_id,
            "childFolderCount": len(children),
            "unreadItemCount": sum(1 for m in self.members if not mailbox.messages[m].is_read),
            "totalItemCount": len(self.members),
            "isHidden": False,
        }


@dataclass
class Mailbox:
    upn: str
    id: str
    root_id: str
    folders: dict[str, Folder] = field(default_factory=dict)
    messages: dict[str, Message] = field(default_factory=dict)
    change: int = 0  # the mailbox's change counter: every add, remove and update takes one
    sent: list[bytes] = field(default_factory=list)  # what sendMail sent, as MIME
    generation: int = 0  # state tokens of an older generation are gone (410)

    @classmethod
    def create(cls, upn: str) -> Mailbox:
        box = cls(upn=upn, id=graph_id("AAQkA"), root_id=graph_id("AAMkR"))
        for key, name in WELL_KNOWN.items():
            folder = Folder(graph_id("AAMkF"), name, None, key)
            box.folders[folder.id] = folder
        return box

    # -- folders ------------------------------------------------------------------------
    def folder(self, key: str) -> Folder | None:
        """A folder by id or well-known name (case-insensitive, as Graph takes them)."""
        if key in self.folders:
            return self.folders[key]
        for folder in self.folders.values():
            if folder.well_known and folder.well_known == key.lower():
                return folder
        return None

    def children(self, parent_id: str | None) -> list[Folder]:
        return [f for f in self.folders.values() if f.parent_id == parent_id]

    def add_folder(self, parent_id: str | None, name: str) -> Folder | None:
        """A new folder, or None when the parent already has one of that name (any case)."""
        if any(f.name.lower() == name.lower() for f in self.children(parent_id)):
            return None
        folder = Folder(graph_id("AAMkF"), name, parent_id)
        self.folders[folder.id] = folder
        return folder

    def path(self, path: str) -> Folder | None:
        """A folder by its path of display names ("Inbox/Triage/Processed")."""
        parent: str | None = None
        found: Folder | None = None
        for part in path.split("/"):
            found = next((f for f in self.children(parent) if f.name.lower() == part.lower()), None)
            if found is None:
                return None
            parent = found.id
        return found

    # -- messages ------------------------------------------------------------------------
    def deliver(self, folder: Folder, raw: bytes, *, is_read: bool = False) -> Message:
        head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
        message = Message(
            id=graph_id(),
            folder_id=folder.id,
            raw=raw,
            entered=0,
            received=now_text(),
            internet_message_id=str(head.get("Message-ID", "") or ""),
            subject=str(head.get("Subject", "") or ""),
            is_read=is_read,
        )
        self.messages[message.id] = message
        self._enter(folder, message)
        return message

    def move(self, message: Message, target: Folder) -> Message:
        """Move to `target`: the message gets a new id there, as Exchange gives it."""
        source = self.folders[message.folder_id]
        self._leave(source, message)
        del self.messages[message.id]
        message.id = graph_id()
        message.folder_id = target.id
        self.messages[message.id] = message
        self._enter(target, message)
        return message

    def update(self, message: Message, *, is_read: bool | None, categories: list[str] | None):
        if is_read is not None:
            message.is_read = is_read
        if categories is not None:
            message.categories = list(categories)
        self.change += 1
        folder = self.folders[message.folder_id]
        folder.log.append((self.change, message.id, "update", message.entered))

    def _enter(self, folder: Folder, message: Message) -> None:
        self.change += 1
        message.entered = self.change
        folder.members[message.id] = self.change
        folder.order.append((self.change, message.id))
        folder.log.append((self.change, message.id, "add", self.change))

    def _leave(self, folder: Folder, message: Message) -> None:
        self.change += 1
        folder.members.pop(message.id, None)
        folder.log.append((self.change, message.id, "remove", message.entered))


# -- delta ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncState:
    """What a state token stands for: a round of changes in one folder.

    since: the change number the round starts after (-1: the first round, the folder's
    contents); until: the change number the round ends at; after: the position reached
    inside the round (an `entered` number in a first round, a change number later).
    """

    folder: str
    since: int
    until: int
    after: int
    issued: int  # the mailbox's generation when this token was made
    select: tuple[str, ...] | None
    change_type: str | None

    def token(self) -> str:
        data = json.dumps(
            [
                self.folder,
                self.since,
                self.until,
                self.after,
                self.issued,
                self.select,
                self.change_type,
            ]
        ).encode()
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    @classmethod
    def parse(cls, token: str) -> SyncState | None:
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            folder, since, until, after, issued, select, change_type = data
            return cls(
                folder,
                int(since),
                int(until),
                int(after),
                int(issued),
                tuple(select) if select is not None else None,
                change_type,
            )
        except (ValueError, TypeError):
            return None


def delta_page(
    box: Mailbox, folder: Folder, state: SyncState, size: int
) -> tuple[list[dict], SyncState, bool]:
    """One page of a delta round: (items, the state to go on from, whether the round ended).

    When the round ends, the state returned is the next round's (a deltaLink's): it starts
    where this one ended.
    """
    select = list(state.select) if state.select is not None else None
    items: list[dict] = []
    after = state.after
    if state.since < 0:  # first round: what is in the folder, oldest first
        start = bisect.bisect_right(folder.order, (state.after, "\uffff"))
        i = start
        while i < len(folder.order) and len(items) < size:
            entered, mid = folder.order[i]
            i += 1
            if entered > state.until:
                i = len(folder.order)
                break
            after = entered
            if folder.members.get(mid) == entered:
                items.append(box.messages[mid].resource(select))
        done = i >= len(folder.order) or folder.order[i][0] > state.until
    else:
        start = bisect.bisect_right(folder.log, (state.after, "\uffff", "", 0))
        i = start
        while i < len(folder.log) and len(items) < size:
            n, mid, kind, entered = folder.log[i]
            i += 1
            if n > state.until:
                i = len(folder.log)
                break
            after = n
            present = folder.members.get(mid) == entered
            if kind == "add" and present:
                if state.change_type in (None, "created"):
                    items.append(box.messages[mid].resource(select))
            elif kind == "update" and present and entered <= state.since:
                if state.change_type in (None, "updated"):
                    items.append(box.messages[mid].resource(select))
            elif (
                kind == "remove"
                and entered <= state.since
                and state.change_type in (None, "deleted")
            ):
                items.append(
                    {
                        "@odata.type": "#microsoft.graph.message",
                        "id": mid,
                        "@removed": {"reason": "deleted"},
                    }
                )
        done = i >= len(folder.log) or folder.log[i][0] > state.until
    if done:
        following = SyncState(
            folder.id,
            state.until,
            state.until,
            state.until,
            box.generation,
            state.select,
            state.change_type,
        )
        return items, following, True
    return (
        items,
        SyncState(
            folder.id,
            state.since,
            state.until,
            after,
            box.generation,
            state.select,
            state.change_type,
        ),
        False,
    )
