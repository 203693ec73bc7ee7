"""Mail held for review: list it, release one into a ticket, tell the operator once a day.

Review is where a weak rule's verdict waits for a person (docs/signals.md,
"Evidence"): no ticket, no acknowledgement, nothing lost. The bytes were kept
beside the database when the message arrived, so a release needs no mailbox:
it runs today's rules past the filters and writes the ticket as on arrival.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from triage import instants
from triage.config import Config
from triage.core.pipeline import Action, Decision, Rules, analyse
from triage.core.replies import capped_subject, clean
from triage.engine.record import Recorder
from triage.errors import TriageError
from triage.store.sqlite import Store

DIGEST_EVERY = timedelta(hours=24)
DIGEST_MAX = 200  # messages listed in one digest; `triage review` lists them all


class ReviewError(TriageError, ValueError):
    """A review command that cannot be done; the message says what to do instead."""


@dataclass(frozen=True, slots=True)
class Held:
    """One message waiting for review, as `triage review` lists it."""

    id: int
    key: str
    message_id: str | None
    sender: str
    subject: str
    received_at: str
    reason: str
    source: str
    sha256: str
    evidence: tuple[dict, ...]

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "key": self.key,
            "message_id": self.message_id,
            "from": self.sender,
            "subject": self.subject,
            "received_at": self.received_at,
            "reason": self.reason,
            "source": self.source,
            "evidence": list(self.evidence),
            "release": f"triage review release {self.id}",
        }

    def sides(self, side: str) -> list[str]:
        """The names of the signals on one side, set-aside rules marked."""
        return [
            e["name"] + (" (set aside)" if e.get("answered") else "")
            for e in self.evidence
            if e.get("side") == side
        ]


def listing(store: Store) -> list[Held]:
    """Every message waiting for review, oldest first."""
    rows = store.conn.execute(
        "SELECT id, message_key, message_id, from_addr, subject, received_at, reason, source,"
        " sha256, decision FROM messages WHERE action = 'review' ORDER BY id"
    ).fetchall()
    return [_held(row) for row in rows]


def count(store: Store) -> int:
    return store.conn.execute("SELECT COUNT(*) FROM messages WHERE action = 'review'").fetchone()[0]


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
        row = store.conn.execute(
            "SELECT id, message_key, message_id, from_addr, subject, received_at, reason, source,"
            " sha256, decision FROM messages WHERE id = ? AND action = 'review'",
            (int(text.lstrip("#")),),
        ).fetchone()
    else:
        row = store.conn.execute(
            "SELECT id, message_key, message_id, from_addr, subject, received_at, reason, source,"
            " sha256, decision FROM messages WHERE message_key = ? AND action = 'review'",
            (text,),
        ).fetchone()
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
        store.conn.execute(
            "DELETE FROM events WHERE message_key = ? AND kind = 'review'", (held.key,)
        )
        gone = store.conn.execute(
            "DELETE FROM messages WHERE id = ? AND action = 'review'", (held.id,)
        ).rowcount
        if gone != 1:  # another release won the write lock first
            raise ReviewError(f"message {held.id} was released meanwhile; fix: `triage tickets`")
        recorder = Recorder(rules, store)
        decision = recorder.release(analysis, arrived, now)
        if decision.action not in (Action.TICKET, Action.APPEND):
            store.rollback()
            raise ReviewError(
                f"message {held.id} could not be released: {decision.action}"
                f" ({decision.reasons[0] if decision.reasons else decision.reason})"
            )
        store.conn.execute(
            "INSERT INTO events (ticket_id, message_key, kind, at, detail)"
            " SELECT id, ?, 'released', ?, ? FROM tickets WHERE number = ?",
            (
                decision.message_key,
                _iso(now),
                json.dumps({"rule": held.reason, "arrived": held.received_at}),
                decision.ticket,
            ),
        )
        recorder.commit()
    except BaseException:
        store.rollback()
        raise
    path.unlink(missing_ok=True)
    return decision


# -- the digest ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Digest:
    to: str
    subject: str
    message_id: str
    text: str
    raw: bytes


def describe(h: Held, mark: str = "") -> list[str]:
    """One held message as the listing and the digest show it (plain text, one fact a line)."""
    return [
        f"{mark:5}#{h.id}  {h.received_at}  {clean(h.sender)}",
        f"       subject: {capped_subject(h.subject, 120)}",
        f"       rule:    {h.reason}",
        f"       person:  {', '.join(h.sides('person')) or 'none'}",
        f"       machine: {', '.join(h.sides('machine')) or 'none'}",
        f"       release: triage review release {h.id}",
        "",
    ]


def last_digest(store: Store) -> datetime | None:
    row = store.conn.execute("SELECT MAX(at) FROM events WHERE kind = 'review_digest'").fetchone()
    return instants.stored(row[0]) if row and row[0] else None


def digest(store: Store, config: Config, now: datetime) -> Digest | None:
    """The operator's digest of what waits for review, or None when nothing does."""
    held = listing(store)
    if not held:
        return None
    since = last_digest(store)
    new = [h for h in held if since is None or h.received_at > _iso(since)]
    subject = f"triage: {len(held)} message(s) wait for review ({len(new)} new)"
    lines = [
        f"{len(held)} message(s) were kept out of the ticket queue because only weak filter rules",
        "fired on mail that shows signs of a person. Nothing was answered. Release one into a",
        "ticket (its deadline runs from its arrival) with the command shown under it.",
        "",
    ]
    for h in held[:DIGEST_MAX]:
        lines += describe(h, "new" if h in new else "")
    if len(held) > DIGEST_MAX:
        lines += [f"... and {len(held) - DIGEST_MAX} more.", ""]
    lines.append("Everything in review: triage review (or triage review --json).")
    text = "\n".join(lines) + "\n"
    domain = sorted(config.own_domains)[0]
    message_id = f"<review-digest.{now:%Y%m%d%H%M%S}.{secrets.token_hex(6)}@{domain}>"
    to = config.daemon.operator or ""
    head = (
        f"From: {config.support_address}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: {now.strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\nMessage-ID: {message_id}\r\n"
        "Auto-Submitted: auto-generated\r\nX-Auto-Response-Suppress: All\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    )
    raw = head.encode("ascii") + text.replace("\n", "\r\n").encode("utf-8")
    return Digest(to, subject, message_id, text, raw)


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
        at = _iso(now)
        store.conn.execute(
            "INSERT INTO outbox (ticket_id, to_addr, subject, message_id, raw, status, attempts, created_at)"
            " VALUES (NULL, ?, ?, ?, ?, 'pending', 0, ?)",
            (found.to, found.subject, found.message_id, found.raw.decode("utf-8"), at),
        )
        store.conn.execute(
            "INSERT INTO events (ticket_id, message_key, kind, at, detail) VALUES (NULL, NULL,"
            " 'review_digest', ?, ?)",
            (at, json.dumps({"to": found.to, "message_id": found.message_id})),
        )
        store.commit()
    except BaseException:
        store.rollback()
        raise
    return found


def _iso(value: datetime) -> str:
    return instants.iso(value)
