"""SQLite through sqlite-utils: the schema, one savepoint per message, queries.

A message's rows (message, ticket or append, outbox, events) are written
together or not at all; the caller commits in small groups and acknowledges
a message to its source only after the commit that holds it.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import sqlite_utils

from triage import instants
from triage.core.conversation import TicketRef, ticket_number
from triage.core.pipeline import Action, Decision
from triage.core.replies import Ack
from triage.store import files as attachments

SCHEMA_VERSION = 1
_INDEXES = (  # (table, columns, unique)
    ("tickets", ["number"], True),
    ("tickets", ["response_due"], False),
    ("messages", ["message_key"], True),
    ("messages", ["message_id"], False),
    ("messages", ["ticket_id"], False),
    ("events", ["ticket_id"], False),
    ("events", ["kind"], False),
    ("outbox", ["message_id"], False),
    ("outbox", ["status"], False),
    ("outbox", ["to_addr", "created_at"], False),  # the daily acknowledgement limit
    ("attachments", ["message_key"], False),
    ("bounces", ["address", "at"], False),
)
AckRenderer = Callable[[Decision], "Ack"]


def _iso(value: datetime | None) -> str | None:
    return instants.iso(value) if value else None


class Store:
    """The database and the attachment folder beside it."""

    def __init__(self, path: Path | None, prefix: str = "T-", busy_timeout: float = 5.0) -> None:
        """`path` None: an in-memory database for dry runs (same rules, nothing kept).

        `busy_timeout`: seconds a write waits while another process holds the lock.
        """
        self.prefix = prefix
        self.busy_timeout = busy_timeout
        if path is None:
            self._open(":memory:")
            self.path = None
            self.files: Path | None = None
            return
        self.path = Path(path)
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Owner-only from the first byte: tickets hold customers' mail.
            # (SQLite gives the -wal and -shm files the database file's mode.)
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._open(str(self.path))
        self.files = self.path.with_name(self.path.name + ".files")
        # The attachment and quarantine folder, owner-only too: made here, because
        # mkdir(parents=True) below it would make it with the umask's 0755; and
        # narrowed when an earlier release made it so.
        try:
            self.files.mkdir(mode=0o700, exist_ok=True)
            if self.files.stat().st_mode & 0o077:
                os.chmod(self.files, 0o700)
        except OSError:  # a read-only place (`triage tickets` on a copy): nothing is written
            pass

    def _open(self, where: str) -> None:
        self.conn = sqlite3.connect(
            where, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout
        )  # timeout: SQLite's busy timeout, how long a write waits for another's lock
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA wal_autocheckpoint=1000")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.db = sqlite_utils.Database(self.conn)
        self._ensure_schema()
        self._in_batch = False
        # Replay writes would-be acknowledgements with status "replay": never sent.
        self.outbox_status = "pending"

    # -- schema -----------------------------------------------------------
    def _ensure_schema(self) -> None:
        self._create_tables()
        # Databases made by an earlier release gain the columns added since.
        # The loop guard counts acknowledgements per address for every new ticket.
        self.conn.execute(
            "CREATE INDEX IF NOT EXISTS outbox_to_addr_created ON outbox (to_addr, created_at)"
        )
        for table, columns in (
            ("tickets", {"queue": str, "vip": int, "forwarded_by": str}),
            ("messages", {"fingerprint": str}),
            # outbox claims: a drainer marks a row `sending`, its own, until lease_until
            ("outbox", {"next_attempt_at": str, "claimed_by": str, "lease_until": str}),
        ):
            have = set(self.db[table].columns_dict)
            for name, kind in columns.items():
                if name not in have:
                    self.db[table].add_column(name, kind)

    def _create_tables(self) -> None:
        db = self.db
        if "tickets" not in db.table_names():
            db["tickets"].create(
                {
                    "id": int,
                    "number": str,
                    "status": str,
                    "subject": str,
                    "requester": str,
                    "requester_name": str,
                    "participants": str,
                    "company": str,
                    "contact": str,
                    "match": str,
                    "verified": int,
                    "priority": str,
                    "level": int,
                    "policy": str,
                    "plan": str,
                    "calendar": str,
                    "timezone": str,
                    "target": str,
                    "response_due": str,
                    "created_at": str,
                    "first_response_at": str,
                    "linked_to": str,
                    "message_key": str,
                    "queue": str,
                    "vip": int,
                    "forwarded_by": str,
                },
                pk="id",
                not_null={"number", "status", "requester", "created_at"},
            )
        if "messages" not in db.table_names():
            db["messages"].create(
                {
                    "id": int,
                    "message_key": str,
                    "message_id": str,
                    "sha256": str,
                    "source": str,
                    "from_addr": str,
                    "subject": str,
                    "date": str,
                    "received_at": str,
                    "action": str,
                    "reason": str,
                    "ticket_id": int,
                    "size": int,
                    "body": str,
                    "decision": str,
                    "fingerprint": str,
                },
                pk="id",
                not_null={"message_key", "action", "received_at"},
                foreign_keys=[("ticket_id", "tickets", "id")],
            )
        if "events" not in db.table_names():
            db["events"].create(
                {
                    "id": int,
                    "ticket_id": int,
                    "message_key": str,
                    "kind": str,
                    "at": str,
                    "detail": str,
                },
                pk="id",
                not_null={"kind", "at"},
            )
        if "outbox" not in db.table_names():
            db["outbox"].create(
                {
                    "id": int,
                    "ticket_id": int,
                    "to_addr": str,
                    "subject": str,
                    "message_id": str,
                    "raw": str,
                    "status": str,
                    "attempts": int,
                    "last_error": str,
                    "created_at": str,
                    "sent_at": str,
                    "next_attempt_at": str,
                    "claimed_by": str,
                    "lease_until": str,
                },
                pk="id",
                not_null={"to_addr", "status", "created_at"},
                defaults={"attempts": 0},
            )
        if "attachments" not in db.table_names():
            db["attachments"].create(
                {
                    "id": int,
                    "message_key": str,
                    "filename": str,
                    "content_type": str,
                    "size": int,
                    "sha256": str,
                },
                pk="id",
            )
        if "contacts" not in db.table_names():
            db["contacts"].create(
                {
                    "email": str,
                    "name": str,
                    "company": str,
                    "site": str,
                    "plan": str,
                    "timezone": str,
                    "vip": int,
                    "aliases": str,
                    "approved": int,
                },
                pk="email",
            )
        if "bounces" not in db.table_names():
            db["bounces"].create(
                {
                    "id": int,
                    "address": str,
                    "at": str,
                    "status": str,
                    "permanent": int,
                    "ticket_id": int,
                    "message_key": str,
                },
                pk="id",
            )
        if "relay_state" not in db.table_names():  # the SMTP relay's health, for `triage status`
            db["relay_state"].create(
                {
                    "relay": str,
                    "failing": int,
                    "failing_since": str,
                    "failures": int,
                    "kind": str,
                    "last_error": str,
                    "last_ok_at": str,
                    "updated_at": str,
                },
                pk="relay",
            )
        if "mailbox_state" not in db.table_names():
            db["mailbox_state"].create(
                {"mailbox": str, "uidvalidity": int, "last_uid": int, "updated_at": str},
                pk="mailbox",
            )
        # Apart from their tables, every time: a process killed between creating a table
        # and its indexes (the very first start) would otherwise leave it without them.
        for table, columns, unique in _INDEXES:
            db[table].create_index(columns, unique=unique, if_not_exists=True)

    # -- batches ------------------------------------------------------------
    def begin(self) -> None:
        if not self._in_batch:
            self.conn.execute("BEGIN IMMEDIATE")
            self._in_batch = True

    def commit(self) -> None:
        if self._in_batch:
            self.conn.execute("COMMIT")
            self._in_batch = False

    def rollback(self) -> None:
        if self._in_batch:
            self.conn.execute("ROLLBACK")
            self._in_batch = False

    def close(self) -> None:
        self.rollback()
        self.conn.close()

    # -- Threads (read side of conversation) -------------------------------
    def fingerprint_of(self, key: str) -> str | None:
        """The stored fingerprint of `key` ('' when stored without one), None when not stored."""
        row = self.conn.execute(
            "SELECT fingerprint FROM messages WHERE message_key = ?", (key,)
        ).fetchone()
        return None if row is None else (row[0] or "")

    def has_key(self, key: str) -> bool:
        return (
            self.conn.execute("SELECT 1 FROM messages WHERE message_key = ?", (key,)).fetchone()
            is not None
        )

    def ticket_for_message_ids(self, ids: tuple[str, ...]) -> TicketRef | None:
        for mid in ids:
            row = self.conn.execute(
                "SELECT ticket_id FROM messages WHERE message_id = ? AND ticket_id IS NOT NULL "
                "UNION ALL SELECT ticket_id FROM outbox WHERE message_id = ? LIMIT 1",
                (mid, mid),
            ).fetchone()
            if row and row[0] is not None:
                return self._ref("id = ?", row[0])
        return None

    def ticket_for_our_message(self, ids: tuple[str, ...]) -> TicketRef | None:
        """The ticket whose acknowledgement carried one of `ids` (bounces of our own mail)."""
        for mid in ids[:50]:
            row = self.conn.execute(
                "SELECT ticket_id FROM outbox WHERE message_id = ? AND ticket_id IS NOT NULL",
                (mid,),
            ).fetchone()
            if row:
                return self._ref("id = ?", row[0])
        return None

    def recipient_of_our_message(self, ids: tuple[str, ...]) -> str | None:
        """The address the acknowledgement carrying one of `ids` was sent to (as `ticket_for_our_message`)."""
        for mid in ids[:50]:
            row = self.conn.execute(
                "SELECT lower(to_addr) FROM outbox WHERE message_id = ? AND ticket_id IS NOT NULL",
                (mid,),
            ).fetchone()
            if row:
                return row[0]
        return None

    def sent_by_us(self, message_id: str) -> bool:
        """Whether `message_id` is one we sent (or queued): our own mail coming back. By index."""
        row = self.conn.execute(
            "SELECT 1 FROM outbox WHERE message_id = ? LIMIT 1", (message_id,)
        ).fetchone()
        return row is not None

    def bounced_since(self, address: str, since: datetime) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM bounces WHERE address = ? AND permanent = 1 AND at >= ? LIMIT 1",
            (address.lower(), _iso(since)),
        ).fetchone()
        return row is not None

    def acks_since(self, address: str, since: datetime) -> int:
        row = self.conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE to_addr = ? AND ticket_id IS NOT NULL AND created_at >= ?",
            (address, _iso(since)),
        ).fetchone()
        return row[0]

    def ticket_by_number(self, number: str) -> TicketRef | None:
        return self._ref("number = ?", number)

    def _ref(self, where: str, value: object) -> TicketRef | None:
        row = self.conn.execute(
            f"SELECT number, requester, participants, company FROM tickets WHERE {where}", (value,)
        ).fetchone()
        if row is None:
            return None
        return TicketRef(row[0], row[1], frozenset(json.loads(row[2] or "[]")), row[3])

    # -- write side -----------------------------------------------------------
    def record(self, d: Decision, now: datetime, ack: AckRenderer | None = None) -> Decision:
        """Write one message's rows in a savepoint; returns `d` with its ticket number.

        `ack` renders (to, subject, message_id, raw) of the acknowledgement once
        the ticket has its number; it is queued in the same savepoint.
        """
        if d.action == Action.DUPLICATE:
            return d
        self.conn.execute("SAVEPOINT msg")
        try:
            d = self._record(d, now, ack)
        except BaseException:
            self.conn.execute("ROLLBACK TO msg")
            self.conn.execute("RELEASE msg")
            raise
        self.conn.execute("RELEASE msg")
        return d

    def _record(self, d: Decision, now: datetime, ack: AckRenderer | None) -> Decision:
        e = d.email
        at = _iso(now)
        ticket_id: int | None = None
        if d.action == Action.TICKET and e is not None:
            dl = d.deadline
            # The id SQLite would pick for a rowid table, chosen here so that the number
            # goes in with the row (the write lock is held: nobody else can take it).
            ticket_id = self.conn.execute(
                "SELECT COALESCE(MAX(id), 0) + 1 FROM tickets"
            ).fetchone()[0]
            number = ticket_number(self.prefix, ticket_id)
            self.conn.execute(
                "INSERT INTO tickets (id, number, status, subject, requester, requester_name, participants,"
                " company, contact, match, verified, priority, level, policy, plan, calendar, timezone,"
                " target, response_due, created_at, linked_to, message_key, queue, vip, forwarded_by)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ticket_id,
                    number,
                    d.status,
                    e.subject,
                    d.requester or e.from_addr,
                    d.requester_name if d.requester else e.from_name,
                    json.dumps(sorted({e.from_addr, d.requester or e.from_addr, *e.cc})),
                    d.company,
                    d.contact,
                    d.match,
                    int(d.verified),
                    d.priority,
                    d.level,
                    dl.policy if dl else None,
                    dl.plan if dl else None,
                    dl.calendar if dl else None,
                    d.timezone,
                    dl.target if dl else None,
                    _iso(d.due),
                    at,
                    d.linked_ticket,
                    e.key,
                    d.queue,
                    int(d.vip),
                    d.forwarded_by,
                ),
            )
            d = replace(d, ticket=number)
            self._event(
                ticket_id, e.key, "created", at, {"priority": d.priority, "due": _iso(d.due)}
            )
            if d.linked_ticket:
                self._event(ticket_id, e.key, "linked", at, {"to": d.linked_ticket})
        elif d.action == Action.APPEND and d.ticket:
            row = self.conn.execute(
                "SELECT id FROM tickets WHERE number = ?", (d.ticket,)
            ).fetchone()
            ticket_id = row[0] if row else None
            self._event(
                ticket_id,
                e.key if e else None,
                "appended",
                at,
                {"from": e.from_addr if e else None},
            )
        key = d.message_key or f"sha256:{d.source}"
        self.conn.execute(
            "INSERT INTO messages (message_key, message_id, sha256, source, from_addr, subject, date,"
            " received_at, action, reason, ticket_id, size, body, decision, fingerprint)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                d.message_id,
                e.sha256 if e else None,
                d.source,
                e.from_addr if e else None,
                e.subject if e else None,
                _iso(e.date) if e else None,
                at,
                str(d.action),
                d.reason,
                ticket_id,
                e.size if e else None,
                e.body if e and d.action in (Action.TICKET, Action.APPEND) else None,
                json.dumps(
                    {
                        "reasons": list(d.reasons),
                        "match": d.match,
                        "priority": d.priority,
                        **({"evidence": [s.as_json() for s in d.evidence]} if d.evidence else {}),
                        "category": d.category,
                    }
                ),
                e.fingerprint if e else None,
            ),
        )
        if d.action in (Action.FILTERED, Action.QUARANTINED, Action.REVIEW):
            detail = {"reason": d.reason}
            if d.category:
                detail["category"] = d.category
            self._event(None, key, str(d.action), at, detail)
        if d.bounce is not None and d.linked_ticket:
            self._record_bounce(d, key, at)
        if e is not None and d.action in (Action.TICKET, Action.APPEND):
            for a in e.attachments:
                if a.data and self.files is not None:
                    attachments.save(self.files, a.sha256, a.data)
                self.conn.execute(
                    "INSERT INTO attachments (message_key, filename, content_type, size, sha256)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (key, a.filename, a.content_type, a.size, a.sha256),
                )
        if ack is not None and ticket_id is not None and d.auto_reply:
            self.queue_ack(ticket_id, key, ack(d), now)
        elif ticket_id is not None and d.reply_suppressed:
            self._event(ticket_id, key, "auto_reply_suppressed", at, {"why": d.reply_suppressed})
        return d

    def _record_bounce(self, d: Decision, key: str, at: str | None) -> None:
        """Our acknowledgement bounced: an event on its ticket, and the address remembered.

        Only the address that acknowledgement was sent to is remembered (the decision says
        which; checked here again): a report anyone can write must never silence another.
        """
        b = d.bounce
        assert b is not None
        row = self.conn.execute(
            "SELECT id FROM tickets WHERE number = ?", (d.linked_ticket,)
        ).fetchone()
        ticket_id = row[0] if row else None
        detail = {
            "recipient": b.recipient,
            "status": b.status,
            "action": b.action,
            "diagnostic": b.diagnostic,
        }
        self._event(ticket_id, key, "delivery_failed", at, detail)
        if not b.recipient:
            return
        ids = json.dumps(list(b.message_ids[:50]))
        self.conn.execute(
            "INSERT INTO bounces (address, at, status, permanent, ticket_id, message_key)"
            " SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM outbox WHERE lower(to_addr) = ?"
            " AND message_id IN (SELECT value FROM json_each(?)))",
            (b.recipient, at, b.status, int(b.permanent), ticket_id, key, b.recipient, ids),
        )
        self.conn.execute(
            "UPDATE outbox SET status = 'bounced', last_error = ? WHERE status = 'sent'"
            " AND lower(to_addr) = ? AND message_id IN (SELECT value FROM json_each(?))",
            (f"{b.status or ''} {b.diagnostic or ''}".strip()[:500], b.recipient, ids),
        )

    def queue_ack(self, ticket_id: int, key: str | None, ack: Ack, now: datetime) -> None:
        """An acknowledgement row in the outbox, in the caller's transaction."""
        at = _iso(now)
        self.conn.execute(
            "INSERT INTO outbox (ticket_id, to_addr, subject, message_id, raw, status, attempts, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
            (
                ticket_id,
                ack.to,
                ack.subject,
                ack.message_id,
                ack.raw.decode("utf-8"),
                self.outbox_status,
                at,
            ),
        )
        self._event(ticket_id, key, "auto_reply_queued", at, {"to": ack.to})

    def queue_alert(self, alert: Ack, now: datetime) -> None:
        """A mail to the operator in the outbox, on no ticket: drained before acknowledgements."""
        self.conn.execute(
            "INSERT INTO outbox (ticket_id, to_addr, subject, message_id, raw, status, attempts, created_at)"
            " VALUES (NULL, ?, ?, ?, ?, 'pending', 0, ?)",
            (
                alert.to,
                alert.subject,
                alert.message_id or None,
                alert.raw.decode("utf-8"),
                _iso(now),
            ),
        )

    def _event(
        self, ticket_id: int | None, key: str | None, kind: str, at: str | None, detail: dict
    ) -> None:
        self.conn.execute(
            "INSERT INTO events (ticket_id, message_key, kind, at, detail) VALUES (?, ?, ?, ?, ?)",
            (ticket_id, key, kind, at, json.dumps(detail)),
        )

    def save_quarantined(self, raw: bytes, sha256: str) -> Path:
        """Keep the bytes of a message we could not read, for `triage errors retry`."""
        return self._keep("quarantine", raw, sha256)

    def save_review(self, raw: bytes, sha256: str) -> Path:
        """Keep the bytes of a message held for review, for `triage review release`."""
        return self._keep("review", raw, sha256)

    def kept(self, folder: str, sha256: str) -> Path | None:
        """Where `save_quarantined` / `save_review` put these bytes, if they are there."""
        if self.files is None:
            return None
        path = self.files / folder / f"{sha256}.eml"
        return path if path.is_file() else None

    def _keep(self, folder: str, raw: bytes, sha256: str) -> Path:
        assert self.files is not None
        target = self.files / folder / f"{sha256}.eml"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(target, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(raw)
        return target

    # -- queries ------------------------------------------------------------
    def tickets(self, open_only: bool = False) -> Iterator[dict]:
        """Ticket rows in number order (deadline filters live in triage.tracking)."""
        sql = "SELECT * FROM tickets" + (" WHERE status != 'closed'" if open_only else "")
        yield from self.db.query(sql + " ORDER BY id")

    def filtered(
        self, category: str | None = None, reason: str | None = None, limit: int = 100
    ) -> list[dict]:
        """Filtered messages, newest first; `category` is the filter rule's (e.g. spam)."""
        return list(
            self.db.query(
                "SELECT id, received_at, reason, json_extract(decision, '$.category') AS category,"
                " from_addr, subject, message_id, source FROM messages WHERE action = 'filtered'"
                " AND (:category IS NULL OR json_extract(decision, '$.category') = :category)"
                " AND (:reason IS NULL OR reason = :reason) ORDER BY id DESC LIMIT :limit",
                {"category": category or None, "reason": reason or None, "limit": limit},
            )
        )

    def outbox(self, statuses: tuple[str, ...] = ("pending", "failed")) -> list[dict]:
        marks = ",".join("?" for _ in statuses)
        return list(
            self.db.query(f"SELECT * FROM outbox WHERE status IN ({marks}) ORDER BY id", statuses)
        )
