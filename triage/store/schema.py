"""The whole schema, as data: the tables the last unversioned release wrote, and what came after.

`RELEASE_TABLES` and `RELEASE_INDEXES` are the database of the last release before the
schema was versioned (9e44bdc): migration 1 (triage/store/migrations.py) makes any
unversioned database, of that release or an earlier one, exactly that. What changed since
is each a later migration, built from the values below; these values never change once a
migration has shipped (a change is a new migration), so a database made new and one made
by a release and migrated are the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Table:
    """One table as sqlite-utils creates it."""

    columns: dict[str, type]
    pk: str
    not_null: frozenset[str] = frozenset()
    defaults: dict[str, object] = field(default_factory=dict)
    foreign_keys: tuple[tuple[str, str, str], ...] = ()  # (column, table, column)


RELEASE_TABLES: dict[str, Table] = {
    "tickets": Table(
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
        not_null=frozenset({"number", "status", "requester", "created_at"}),
    ),
    "messages": Table(
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
        not_null=frozenset({"message_key", "action", "received_at"}),
        foreign_keys=(("ticket_id", "tickets", "id"),),
    ),
    "events": Table(  # the audit trail
        {"id": int, "ticket_id": int, "message_key": str, "kind": str, "at": str, "detail": str},
        pk="id",
        not_null=frozenset({"kind", "at"}),
    ),
    "outbox": Table(
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
            # claims: a drainer marks a row `sending`, its own, until lease_until
            "next_attempt_at": str,
            "claimed_by": str,
            "lease_until": str,
            "envelope_from": str,
        },
        pk="id",
        not_null=frozenset({"to_addr", "status", "created_at"}),
        defaults={"attempts": 0},
    ),
    "attachments": Table(  # their bytes live in the content-addressed folder beside the database
        {
            "id": int,
            "message_key": str,
            "filename": str,
            "content_type": str,
            "size": int,
            "sha256": str,
        },
        pk="id",
    ),
    "contacts": Table(
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
    ),
    "bounces": Table(
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
    ),
    "relay_state": Table(  # the SMTP relay's health, for `triage status`
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
    ),
    "mailbox_state": Table(  # UID bookkeeping and health per mailbox
        {
            "mailbox": str,
            "uidvalidity": int,
            "last_uid": int,
            "updated_at": str,
            "state": str,  # connecting | idle | fetching | failing | stopped
            "last_error": str,
            "failures": int,
            "failing": int,
            "failing_since": str,
            "last_message_at": str,
            "last_ok_at": str,
            "backlog": int,
        },
        pk="mailbox",
    ),
}

RELEASE_INDEXES: tuple[tuple[str, tuple[str, ...], bool], ...] = (  # (table, columns, unique)
    ("tickets", ("number",), True),
    ("tickets", ("response_due",), False),
    ("messages", ("message_key",), True),
    ("messages", ("message_id",), False),
    ("messages", ("ticket_id",), False),
    ("events", ("ticket_id",), False),
    ("events", ("kind",), False),
    ("outbox", ("message_id",), False),
    ("outbox", ("status",), False),
    ("outbox", ("to_addr", "created_at"), False),  # the daily acknowledgement limit
    ("attachments", ("message_key",), False),
    ("bounces", ("address", "at"), False),
)

# Migration 2: the links between the tables, so a row cannot name a ticket or message that
# is not there, and Datasette and sqlite-utils show them. (messages.ticket_id had its key
# since the table was made; a database older than that gains it.) Not linked: events.message_key and tickets.message_key, which are written before
# their message's row in the same savepoint and outlive it when a held message is released
# (the message row is written again).
FOREIGN_KEYS: tuple[tuple[str, str, str, str], ...] = (  # (table, column, other table, column)
    ("messages", "ticket_id", "tickets", "id"),
    ("events", "ticket_id", "tickets", "id"),
    ("outbox", "ticket_id", "tickets", "id"),
    ("bounces", "ticket_id", "tickets", "id"),
    ("bounces", "message_key", "messages", "message_key"),
    ("attachments", "message_key", "messages", "message_key"),
)


# Migration 10's indexes, the same statement on both backends (store/migrations.py says
# which statement each serves).
YEARS_INDEXES = (
    "CREATE INDEX IF NOT EXISTS tickets_open ON tickets (id)"
    " WHERE status NOT IN ('resolved', 'closed')",
    "CREATE INDEX IF NOT EXISTS tickets_report ON tickets"
    " (priority, level, response_due, first_response_at, paused_at, created_at)",
    "CREATE INDEX IF NOT EXISTS idx_messages_action ON messages (action)",
    "CREATE INDEX IF NOT EXISTS idx_messages_action_received_at ON messages (action, received_at)",
    "CREATE INDEX IF NOT EXISTS idx_attachments_sha256 ON attachments (sha256)",
)

# Migration 12 (SQLite): a ticket's first-response outcome as far as it does not depend on
# the clock, as `tracking.outcome` judges it: 0 no target, 1 answered within it, 2 answered
# late, 3 not answered yet (pending or breached, which `now` decides). The response report
# groups by it, and the index below keeps it computed: the report reads each ticket's
# outcome from the index instead of parsing its two instants (store/tickets.py).
RESPONSE_OUTCOME = (
    "CASE WHEN response_due IS NULL THEN 0 WHEN first_response_at IS NULL THEN 3"
    " WHEN julianday(first_response_at) <= julianday(response_due) THEN 1 ELSE 2 END"
)
# The outcome leads, so the unanswered tickets (3) are a range of the index of their own.
# Never edit either once released: the report's statements name the same expression, and an
# index made by another would no longer be the one they read.
OUTCOMES_INDEX = (
    f"CREATE INDEX IF NOT EXISTS tickets_outcomes ON tickets (({RESPONSE_OUTCOME}),"
    " priority, level, created_at, response_due, first_response_at, paused_at)"
)
