"""`triage prune`: what a store with years in it no longer needs, removed in small batches.

What goes, older than the cut-off:
- filtered mail: the message row is emptied (subject, sender, source, body, the decision's
  reasons; its category stays) and marked `pruned_at`; its attachment rows and its kept
  bytes (`message_bytes`, or the file of a large message) go, and the files no other row
  names. Its key, Message-ID, fingerprint, hash, size, action and filter rule stay: the same
  mail fetched again (a server that offers it again) is still a duplicate, never a ticket,
  and the counts per action and rule (`triage metrics`) do not change;
- the kept bytes of quarantined and held mail that no row waits on any more (a retry that
  succeeded, a release whose file was left behind), by the file's age.
What never goes: a ticket's messages, mail held for review or quarantined (awaiting a retry
or a release), the outbox, the events.

Each batch is one short write transaction (BEGIN IMMEDIATE ... COMMIT), so a daemon writing
beside it waits at most one batch (its busy_timeout is 5 s); the candidates are found
before the lock is taken and checked again under it. Files are unlinked after the commit
that removed their last row: a crash leaves a file no row names, never a row without its
file. The full-text index follows the emptied rows through its update trigger
(store/desk/fts.py): every row pruned is a committed row the index was given.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from triage import instants
from triage.store import files as content

if TYPE_CHECKING:
    from triage.store.sqlite import Store

BATCH = 500  # messages a write transaction empties (bench/bigstore.py measures its lock)
HELD_FOLDERS = ("quarantine", "review")


@dataclass(slots=True)
class Pruned:
    """What a prune removed (or, dry, would remove)."""

    before: str  # the cut-off, ISO 8601 UTC
    dry_run: bool
    messages: int = 0  # filtered messages emptied
    attachments: int = 0  # attachment rows deleted
    kept_bytes: int = 0  # message_bytes rows deleted
    files: int = 0  # files deleted beside the database
    bytes_freed: int = 0  # the emptied columns, the kept bytes and the files
    batches: int = 0
    lock_ms: list[float] = field(default_factory=list)  # each batch's write transaction

    def as_json(self) -> dict:
        return {
            "before": self.before,
            "dry_run": self.dry_run,
            "messages": self.messages,
            "attachments": self.attachments,
            "kept_bytes": self.kept_bytes,
            "files": self.files,
            "bytes_freed": self.bytes_freed,
            "batches": self.batches,
            "longest_lock_ms": round(max(self.lock_ms, default=0.0), 1),
        }


def prune(store: Store, before: datetime, now: datetime, dry_run: bool = False) -> Pruned:
    """Remove what is no longer needed from mail that arrived before `before` (see the
    module's docstring); `dry_run` counts the same and changes nothing."""
    result = Pruned(instants.iso(before), dry_run)
    cutoff = instants.iso(before)
    gone_attachments: set[int] = set()  # a dry run's rows "deleted" so far
    gone_messages: set[int] = set()
    after = 0
    while True:
        ids = [
            row[0]
            for row in store.conn.execute(
                "SELECT id FROM messages WHERE action = 'filtered' AND id > ?"
                " AND pruned_at IS NULL AND ticket_id IS NULL"
                " AND julianday(received_at) < julianday(?) ORDER BY id LIMIT ?",
                (after, cutoff, BATCH),
            )
        ]
        if not ids:
            break
        after = ids[-1]
        unlink = _batch(store, ids, now, result, gone_attachments, gone_messages)
        if not dry_run:
            result.bytes_freed += _unlink(unlink)
        else:
            result.bytes_freed += sum(_size(p) for p in unlink)
        result.files += len(unlink)
    _held_leftovers(store, before, result)
    return result


def _batch(
    store: Store,
    ids: list[int],
    now: datetime,
    result: Pruned,
    gone_attachments: set[int],
    gone_messages: set[int],
) -> list[Path]:
    """One batch in one write transaction; the files it leaves unnamed (to unlink after)."""
    conn = store.conn
    dry = result.dry_run
    if not dry:
        conn.execute("BEGIN IMMEDIATE")
    started = time.perf_counter()
    try:
        wanted = json.dumps(ids)
        rows = conn.execute(  # again, under the lock: still filtered, still not pruned
            "SELECT id, message_key, message_id, sha256, COALESCE(length(subject), 0)"
            " + COALESCE(length(from_addr), 0) + COALESCE(length(source), 0)"
            " + COALESCE(length(body), 0) + COALESCE(length(decision), 0)"
            " FROM messages WHERE id IN (SELECT value FROM json_each(?))"
            " AND action = 'filtered' AND pruned_at IS NULL AND ticket_id IS NULL",
            (wanted,),
        ).fetchall()
        ids = [r[0] for r in rows]
        keys = json.dumps([r[1] for r in rows])
        attachments = conn.execute(
            "SELECT id, sha256, COALESCE(size, 0) FROM attachments"
            " WHERE message_key IN (SELECT value FROM json_each(?))",
            (keys,),
        ).fetchall()
        own = [(r[0], r[2], r[3]) for r in rows if r[3]]  # (id, Message-ID, hash)
        if dry:  # every row a dry run has counted so far stands for one pruned
            gone_messages.update(ids)
            going = gone_messages
        else:
            going = set(ids)
        kept = _kept_bytes(store, own, going)
        result.messages += len(rows)
        result.bytes_freed += sum(r[4] for r in rows) + sum(n for _, n in kept)
        result.attachments += len(attachments)
        result.kept_bytes += len(kept)
        result.batches += 1
        if dry:
            gone_attachments.update(a[0] for a in attachments)
        else:
            conn.execute(
                "DELETE FROM attachments WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps([a[0] for a in attachments]),),
            )
            conn.execute(
                "DELETE FROM message_bytes WHERE sha256 IN (SELECT value FROM json_each(?))",
                (json.dumps([sha for sha, _ in kept]),),
            )
            conn.execute(
                "UPDATE messages SET subject = NULL, from_addr = NULL, source = NULL,"
                " body = NULL, decision = json_object('category',"
                " json_extract(decision, '$.category')), pruned_at = ?"
                " WHERE id IN (SELECT value FROM json_each(?))",
                (instants.iso(now), json.dumps(ids)),
            )
        unlink = _unnamed(store, {a[1] for a in attachments if a[1]}, gone_attachments)
        unlink += _unnamed_messages(store, own, going)
        if not dry:
            conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if not dry:
        result.lock_ms.append((time.perf_counter() - started) * 1000)
    return unlink


def _kept_bytes(
    store: Store, own: list[tuple[int, str | None, str]], going: set[int]
) -> list[tuple[str, int]]:
    """(hash, size) of the `message_bytes` rows of these messages that no other message
    needs (the same bytes have the same Message-ID: looked up by it, an index)."""
    out = []
    for _id, mid, sha in own:
        row = store.conn.execute(
            "SELECT length(raw) FROM message_bytes WHERE sha256 = ?", (sha,)
        ).fetchone()
        if row is not None and not _named_elsewhere(store, mid, sha, going):
            out.append((sha, row[0]))
    return out


def _named_elsewhere(store: Store, mid: str | None, sha: str, going: set[int]) -> bool:
    """Another message, not pruned and not being pruned, has these bytes."""
    if mid is None:
        return False  # keyed by the hash of its bytes: no other row has them
    others = store.conn.execute(
        "SELECT id FROM messages WHERE message_id = ? AND sha256 = ? AND pruned_at IS NULL",
        (mid, sha),
    ).fetchall()
    return any(r[0] not in going for r in others)


def _unnamed(store: Store, hashes: Iterable[str], gone: set[int]) -> list[Path]:
    """The attachment files of `hashes` that no attachment row left names (`gone`: rows a
    dry run counts as deleted)."""
    out = []
    for sha in sorted(hashes):
        rows = store.conn.execute("SELECT id FROM attachments WHERE sha256 = ?", (sha,))
        if any(r[0] not in gone for r in rows):
            continue
        path = _file(store, sha)
        if path is not None:
            out.append(path)
    return out


def _unnamed_messages(
    store: Store, own: list[tuple[int, str | None, str]], going: set[int]
) -> list[Path]:
    """The files of large messages' bytes (store/files.py) no other message needs."""
    out = []
    for _id, mid, sha in own:
        path = _file(store, sha)
        if path is not None and not _named_elsewhere(store, mid, sha, going):
            if store.conn.execute(
                "SELECT 1 FROM attachments WHERE sha256 = ? LIMIT 1", (sha,)
            ).fetchone():
                continue  # the same bytes attached to another message (a forwarded mail)
            out.append(path)
    return out


def _file(store: Store, sha: str) -> Path | None:
    if store.files is None or not sha or not all(c in "0123456789abcdef" for c in sha):
        return None
    path = content.path_for(store.files, sha)
    return path if path.is_file() else None


def _held_leftovers(store: Store, before: datetime, result: Pruned) -> None:
    """Kept bytes of quarantined and held mail that no row waits on, older than `before`:
    looked at, and unlinked, under the write lock, as the engine keeps them under it."""
    if store.files is None:
        return
    conn = store.conn
    if not result.dry_run:
        conn.execute("BEGIN IMMEDIATE")
    started = time.perf_counter()
    try:
        waiting = {
            "quarantine": {
                key.removeprefix("sha256:")
                for (key,) in conn.execute(
                    "SELECT message_key FROM messages WHERE action = 'quarantined'"
                )
            },
            "review": {
                sha
                for (sha,) in conn.execute("SELECT sha256 FROM messages WHERE action = 'review'")
            },
        }
        limit = before.timestamp()
        for folder in HELD_FOLDERS:
            root = store.files / folder
            if not root.is_dir():
                continue
            for path in sorted(root.glob("*.eml")):
                try:
                    st = path.stat()
                except OSError:
                    continue
                if path.stem in waiting[folder] or st.st_mtime >= limit:
                    continue
                result.files += 1
                result.bytes_freed += st.st_size
                if not result.dry_run:
                    path.unlink(missing_ok=True)
        if not result.dry_run:
            conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if not result.dry_run:
        result.lock_ms.append((time.perf_counter() - started) * 1000)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _unlink(paths: list[Path]) -> int:
    freed = 0
    for path in paths:
        freed += _size(path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return freed
