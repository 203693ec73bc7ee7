"""Mail held for review: list it, release one into a ticket, tell the operator once a day.

Review is where a weak rule's verdict waits for a person (docs/signals.md,
"Evidence"): no ticket, no acknowledgement, nothing lost. The bytes were kept
beside the database when the message arrived, so a release needs no mailbox:
it runs today's rules past the filters and writes the ticket as on arrival.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from triage import instants
from triage.config import Config
from triage.core import digests
from triage.core.analysis import analyse
from triage.core.decision import Action, Decision
from triage.core.digests import DIGEST_MAX, Digest, Held, describe
from triage.core.rules import Rules
from triage.engine.batch import write_batch
from triage.engine.ids import token
from triage.errors import TriageError
from triage.store import held as held_rows
from triage.store.sqlite import Store

DIGEST_EVERY = timedelta(hours=24)

__all__ = ["DIGEST_MAX", "Digest", "Held", "ReviewError", "describe", "digest", "release"]


class ReviewError(TriageError, ValueError):
    """A review command that cannot be done; the message says what to do instead."""


def listing(store: Store) -> list[Held]:
    """Every message waiting for review, oldest first."""
    return [_held(row) for row in held_rows.held(store)]


def count(store: Store) -> int:
    return held_rows.held_count(store)


def _held(row: tuple) -> Held:
    id_, key, mid, sender, subject, at, reason, source, sha, decision = row
    evidence = tuple(json.loads(decision).get("evidence", ())) if decision else ()
    return Held(
        id_, key, mid, sender or "", subject or "", at, reason or "", source or "", sha, evidence
    )


def find(store: Store, key: str) -> Held:
    """The held message named by its listed id (`12`, `#12`) or its message key."""
    text = key.strip()
    if text.lstrip("#").isdigit():
        row = held_rows.held_by_id(store, int(text.lstrip("#")))
    else:
        row = held_rows.held_by_key(store, text)
    if row is None:
        raise ReviewError(
            f"no message {key!r} waits for review; fix: `triage review` lists them (the id or the key)"
        )
    return _held(row)


def release(store: Store, rules: Rules, key: str, now: datetime) -> Decision:
    """Make the ticket a held message would have had on arrival, acknowledgement included.

    The deadline runs from when the message arrived; the acknowledgement is dated
    `now`, when it is written. A reply into a ticket is appended to it instead.
    """
    held = find(store, key)
    path = store.kept("review", held.sha256 or "")
    if path is None:
        raise ReviewError(
            f"message {held.id}: its bytes are not beside the database (a dry run keeps none);"
            " fix: replay the original file into this database"
        )
    arrived = instants.stored(held.received_at)
    analysis = analyse(path.read_bytes(), held.source, rules, released=True)
    store.begin()
    try:
        if not held_rows.forget_held(store, held.id, held.key):  # another release won first
            raise ReviewError(f"message {held.id} was released meanwhile; fix: `triage tickets`")
        (decision,) = write_batch(store, rules, [analysis], arrived, ack_at=now)
        if decision.action not in (Action.TICKET, Action.APPEND):
            store.rollback()
            raise ReviewError(
                f"message {held.id} could not be released: {decision.action}"
                f" ({decision.reasons[0] if decision.reasons else decision.reason})"
            )
        held_rows.released(
            store,
            decision.message_key,
            decision.ticket,
            _iso(now),
            {"rule": held.reason, "arrived": held.received_at},
        )
        store.commit()
    except BaseException:
        store.rollback()
        raise
    path.unlink(missing_ok=True)
    return decision


# -- the digest ---------------------------------------------------------------------------


def last_digest(store: Store) -> datetime | None:
    at = held_rows.last_digest(store)
    return instants.stored(at) if at else None


def digest(store: Store, config: Config, now: datetime) -> Digest | None:
    """The operator's digest of what waits for review, or None when nothing does."""
    held = listing(store)
    since = last_digest(store)
    new = [h for h in held if since is None or h.received_at > _iso(since)]
    return digests.render(held, new, config, now, token(6))


def queue_digest(store: Store, config: Config, now: datetime, force: bool = False) -> Digest | None:
    """Queue the digest in the outbox when one is due (daily, and only if mail waits).

    The daemon's timer calls this; `triage review digest --send` forces it.
    Returns what was queued, or None.
    """
    if not config.daemon.operator:
        return None
    last = last_digest(store)
    if not force and last is not None and now - last < DIGEST_EVERY:
        return None
    found = digest(store, config, now)
    if found is None:
        return None
    store.begin()
    try:
        held_rows.queue_digest(store, found, _iso(now))
        store.commit()
    except BaseException:
        store.rollback()
        raise
    return found


def _iso(value: datetime) -> str:
    return instants.iso(value)
