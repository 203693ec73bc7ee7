"""Rows of the messages kept out of the ticket queue: quarantined, or held for review.

`triage errors` and `triage review` list them; `errors retry` and `review release`
forget a row before the engine writes the message's new decision in the same
transaction (engine/quarantine.py, engine/review.py).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from triage.core.digests import Digest
    from triage.store.sqlite import Store


# -- quarantined --------------------------------------------------------------------------
def quarantined(store: Store) -> list[tuple]:
    """(id, source, reason, received_at, message_key, decision) of each, oldest first."""
    return store.conn.execute(
        "SELECT id, source, reason, received_at, message_key, decision FROM messages"
        " WHERE action = 'quarantined' ORDER BY id"
    ).fetchall()


def message(store: Store, message_id: int) -> tuple | None:
    """(id, source, message_key, action) of stored message `message_id`."""
    return store.conn.execute(
        "SELECT id, source, message_key, action FROM messages WHERE id = ?", (message_id,)
    ).fetchone()


def forget_quarantined(store: Store, message_id: int, key: str) -> None:
    """The quarantine record of a message about to be decided again (caller's transaction)."""
    store.index_pending()
    store.conn.execute("DELETE FROM events WHERE message_key = ? AND kind = 'quarantined'", (key,))
    store.conn.execute("DELETE FROM messages WHERE id = ?", (message_id,))


# -- held for review ----------------------------------------------------------------------
def held(store: Store) -> list[tuple]:
    """(id, message_key, message_id, from_addr, subject, received_at, reason, source, sha256,
    decision) of each message waiting for review, oldest first."""
    return store.conn.execute(
        "SELECT id, message_key, message_id, from_addr, subject, received_at, reason, source,"
        " sha256, decision FROM messages WHERE action = 'review' ORDER BY id"
    ).fetchall()


def held_count(store: Store) -> int:
    return store.conn.execute("SELECT COUNT(*) FROM messages WHERE action = 'review'").fetchone()[0]


def held_by_id(store: Store, message_id: int) -> tuple | None:
    """One held message by its listed id, as `held` lists it."""
    return store.conn.execute(
        "SELECT id, message_key, message_id, from_addr, subject, received_at, reason, source,"
        " sha256, decision FROM messages WHERE id = ? AND action = 'review'",
        (message_id,),
    ).fetchone()


def held_by_key(store: Store, key: str) -> tuple | None:
    """One held message by its message key, as `held` lists it."""
    return store.conn.execute(
        "SELECT id, message_key, message_id, from_addr, subject, received_at, reason, source,"
        " sha256, decision FROM messages WHERE message_key = ? AND action = 'review'",
        (key,),
    ).fetchone()


def forget_held(store: Store, message_id: int, key: str) -> bool:
    """The review record of a message being released (caller's transaction); False when
    another release removed it first."""
    store.index_pending()
    store.conn.execute("DELETE FROM events WHERE message_key = ? AND kind = 'review'", (key,))
    gone = store.conn.execute(
        "DELETE FROM messages WHERE id = ? AND action = 'review'", (message_id,)
    ).rowcount
    return gone == 1


def released(store: Store, key: str | None, ticket: str | None, at: str, detail: dict) -> None:
    """The `released` event on the ticket a held message became."""
    store.conn.execute(
        "INSERT INTO events (ticket_id, message_key, kind, at, detail)"
        " SELECT id, ?, 'released', ?, ? FROM tickets WHERE number = ?",
        (key, at, json.dumps(detail), ticket),
    )


# -- the operator's digest ----------------------------------------------------------------
def last_digest(store: Store) -> str | None:
    """When the last digest was queued (ISO 8601 UTC), or None."""
    row = store.conn.execute("SELECT MAX(at) FROM events WHERE kind = 'review_digest'").fetchone()
    return row[0] if row else None


def queue_digest(store: Store, digest: Digest, at: str) -> None:
    """The digest in the outbox and its `review_digest` event (caller's transaction)."""
    store.conn.execute(
        "INSERT INTO outbox (ticket_id, to_addr, subject, message_id, raw, status, attempts, created_at)"
        " VALUES (NULL, ?, ?, ?, ?, 'pending', 0, ?)",
        (digest.to, digest.subject, digest.message_id, digest.raw.decode("utf-8"), at),
    )
    store.conn.execute(
        "INSERT INTO events (ticket_id, message_key, kind, at, detail) VALUES (NULL, NULL,"
        " 'review_digest', ?, ?)",
        (at, json.dumps({"to": digest.to, "message_id": digest.message_id})),
    )
