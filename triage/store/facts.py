"""Step 2: the facts a batch is decided against, read in one query.

The core asks nothing of the store while it decides; everything the messages of
a batch name (keys, Message-IDs, ticket numbers, reply addresses) is looked up
here at once. Read inside the batch's write transaction, so what is decided
against is what the writes that follow will find.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING

from triage.core.conversation import TicketRef
from triage.core.facts import ACK_WINDOW, Facts, Needs, Sent, instant

if TYPE_CHECKING:
    from triage.store.sqlite import Store


# One statement, one row kind per part: (kind, a, b, c, d, e); a ticket's state is e, as JSON. Each part reads by an index:
# messages(message_key), messages(message_id), outbox(message_id), tickets(number),
# bounces(address, at), outbox(to_addr, created_at) (tests/test_facts.py reads the plan).
FACTS_SQL = """
WITH
  wanted_keys(v) AS (SELECT value FROM json_each(:keys)),
  wanted_ids(v) AS (SELECT value FROM json_each(:ids)),
  wanted_numbers(v) AS (SELECT value FROM json_each(:numbers)),
  threads AS (
    -- the first stored message (lowest id) with each Message-ID that is on a ticket;
    -- SQLite takes the bare column ticket_id from the row MIN(id) chose
    SELECT message_id AS mid, MIN(id) AS first, ticket_id FROM messages
    WHERE message_id IN (SELECT v FROM wanted_ids) AND ticket_id IS NOT NULL
    GROUP BY message_id
  ),
  sent AS (
    SELECT id, message_id AS mid, ticket_id, lower(to_addr) AS rcpt FROM outbox
    WHERE message_id IN (SELECT v FROM wanted_ids)
  )
SELECT 'key', message_key, COALESCE(fingerprint, ''), NULL, NULL, NULL
  FROM messages WHERE message_key IN (SELECT v FROM wanted_keys)
UNION ALL
SELECT 'thread', t.mid, k.number, NULL, NULL, NULL FROM threads t JOIN tickets k ON k.id = t.ticket_id
UNION ALL
SELECT 'sent', s.mid, k.number, s.rcpt, s.id, NULL FROM sent s LEFT JOIN tickets k ON k.id = s.ticket_id
UNION ALL
SELECT 'ticket', number, requester, participants, company, json_array(status, closed_at,
  first_response_at IS NOT NULL, paused_at, response_due, policy, plan, priority, timezone)
  FROM tickets
  WHERE number IN (SELECT v FROM wanted_numbers)
UNION ALL
SELECT 'ticket', k.number, k.requester, k.participants, k.company, json_array(k.status,
  k.closed_at, k.first_response_at IS NOT NULL, k.paused_at, k.response_due, k.policy, k.plan,
  k.priority, k.timezone) FROM tickets k
  WHERE k.id IN (SELECT ticket_id FROM threads UNION SELECT ticket_id FROM sent)
UNION ALL
SELECT 'bounce', address, MAX(at), NULL, NULL, NULL FROM bounces
  WHERE address IN (SELECT value FROM json_each(:lowered)) AND permanent = 1
  GROUP BY address
UNION ALL
SELECT 'ack', to_addr, created_at, NULL, NULL, NULL FROM outbox
  WHERE to_addr IN (SELECT value FROM json_each(:addresses)) AND ticket_id IS NOT NULL
  AND created_at >= :since
UNION ALL
SELECT 'next', NULL, COALESCE(MAX(id), 0) + 1, NULL, NULL, NULL FROM tickets
"""

# The same on PostgreSQL (spelled by store/dialect.py), where it must differ in meaning: a
# grouped query takes no bare column (the thread's ticket is its first row's, by DISTINCT
# ON), and the columns of a UNION have one type each (text).
FACTS_SQL_POSTGRES = (
    FACTS_SQL.replace(
        """    SELECT message_id AS mid, MIN(id) AS first, ticket_id FROM messages
    WHERE message_id IN (SELECT v FROM wanted_ids) AND ticket_id IS NOT NULL
    GROUP BY message_id""",
        """    SELECT DISTINCT ON (message_id) message_id AS mid, id AS first, ticket_id FROM messages
    WHERE message_id IN (SELECT v FROM wanted_ids) AND ticket_id IS NOT NULL
    ORDER BY message_id, id""",
    )
    .replace("SELECT 'key', message_key,", "SELECT 'key'::text, message_key,")
    .replace("s.rcpt, s.id, NULL FROM sent", "s.rcpt, s.id::text, NULL FROM sent")
    .replace("priority, timezone)\n  FROM tickets", "priority, timezone)::text\n  FROM tickets")
    .replace(
        "k.priority, k.timezone) FROM tickets k", "k.priority, k.timezone)::text FROM tickets k"
    )
    .replace("COALESCE(MAX(id), 0) + 1, NULL", "(COALESCE(MAX(id), 0) + 1)::text, NULL")
)


def read(store: Store, needs: Needs, now: datetime) -> Facts:
    """The facts for a batch decided at `now`: one query, whatever the batch's size."""
    rows = store.conn.execute(
        FACTS_SQL_POSTGRES if store.dialect == "postgresql" else FACTS_SQL,  # literals
        {
            "keys": json.dumps(sorted(needs.keys)),
            "ids": json.dumps(sorted(needs.message_ids)),
            "numbers": json.dumps(sorted(needs.numbers)),
            # Python's lower(), as the loop guard always looked bounces up
            "lowered": json.dumps(sorted({a.lower() for a in needs.addresses})),
            "addresses": json.dumps(sorted(needs.addresses)),
            "since": instant(now - ACK_WINDOW),
        },
    ).fetchall()
    stored: dict[str, str] = {}
    threads: dict[str, str] = {}
    tickets: dict[str, TicketRef] = {}
    bounced: dict[str, str] = {}
    acks: dict[str, list[str]] = {}
    outbox: list[tuple[int, str, str | None, str]] = []
    next_ticket = 1
    for kind, a, b, c, d, e in rows:
        if kind == "key":
            stored[a] = b
        elif kind == "thread":
            threads[a] = b
        elif kind == "sent":
            outbox.append((int(d), a, b, c))  # text on PostgreSQL
        elif kind == "ticket":
            state = json.loads(e)
            state[2] = bool(state[2])
            tickets[a] = TicketRef(a, b, frozenset(json.loads(c or "[]")), d, *state)
        elif kind == "bounce":
            bounced[a] = b
        elif kind == "ack":
            acks.setdefault(a, []).append(b)
        else:
            next_ticket = int(b)
    return Facts(
        stored=stored,
        threads=threads,
        sent=_sent(outbox),
        tickets=tickets,
        bounced=bounced,
        acks={address: tuple(times) for address, times in acks.items()},
        next_ticket=next_ticket,
        wanted=needs,
    )


def _sent(rows: list[tuple[int, str, str | None, str]]) -> dict[str, Sent]:
    """Per Message-ID: the ticket of its first outbox row, and its first acknowledgement."""
    first: dict[str, str | None] = {}
    acked: dict[str, tuple[str, str]] = {}
    for _id, mid, number, rcpt in sorted(rows):
        first.setdefault(mid, number)
        if number is not None:
            acked.setdefault(mid, (number, rcpt))
    return {mid: Sent(number, acked.get(mid)) for mid, number in first.items()}
