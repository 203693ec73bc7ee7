"""The SQL of the technicians' pages (Datasette canned queries), as text Datasette runs.

The statements call a few functions that `triage.desk.plugin` registers on every connection
(`desk_now`, `desk_day_start`, `desk_used`, `desk_left`, `desk_ticket`, `desk_match`), so
"breached", "at risk" and "today" mean what `triage sla check` means: the deadline against the
clock, the share of open time used on the ticket's own policy calendar, and midnight in the
desk's time zone. `triage.desk.pages` puts them into the page's metadata.
"""

from __future__ import annotations

OPEN = "status NOT IN ('resolved', 'closed')"  # the lifecycle's states that leave the queue

# A pending ticket whose clock is paused (`paused_at`) reads its clock where it stopped: it
# is breached only if its deadline had passed before the pause, and never at risk.
CLOCK = "min(julianday(desk_now()), COALESCE(julianday(paused_at), julianday(desk_now())))"

_STATE = """CASE
      WHEN first_response_at IS NOT NULL THEN 'answered'
      WHEN response_due IS NULL THEN 'no target'
      WHEN julianday(response_due) < {clock} THEN 'BREACHED'
      WHEN paused_at IS NOT NULL THEN 'paused'
      WHEN desk_used(policy, plan, priority, created_at, timezone) >= {threshold} THEN 'at risk'
      ELSE 'in time'
    END"""


def state_sql(threshold: float) -> str:
    """The SQL expression for a ticket's first-response state, over a `tickets` row."""
    return _STATE.format(threshold=float(threshold), clock=CLOCK)


def queue_sql(threshold: float) -> str:
    return f"""SELECT number AS ticket, {state_sql(threshold)} AS state,
  CASE WHEN first_response_at IS NULL AND paused_at IS NULL
    THEN desk_left(response_due) END AS time_left,
  priority, subject, requester, company, queue, status,
  response_due AS due, created_at AS opened
FROM tickets
WHERE {OPEN}
ORDER BY (first_response_at IS NOT NULL OR response_due IS NULL), julianday(response_due), id"""


# The queue's page draws this many tickets (`?page=N` for the next); drawing every open
# ticket of a busy desk (Datasette's 1,000) cost the page 135 - 410 ms (bench/bigstore.py).
QUEUE_PAGE = 100


def queue_page_sql(threshold: float) -> str:
    """`queue_sql`, one page of it: the limit and offset are the desk's magic parameters
    (`triage.desk.plugin.paging`: from `?page=N`; every row for the JSON twin without it)."""
    return queue_sql(threshold) + "\nLIMIT :_desk_limit OFFSET :_desk_offset"


async def open_count(db) -> int:
    """How many tickets the queue holds (Datasette's `Database`): the count its pages show,
    read by the partial index tickets_open (its states written as `OPEN` writes them)."""
    rows = await db.execute(_OPEN_COUNT)
    return rows.first()[0]


_OPEN_COUNT = f"SELECT COUNT(*) FROM tickets WHERE {OPEN}"


def at_risk_sql(threshold: float) -> str:
    return f"""SELECT number AS ticket, 'at risk' AS state, desk_left(response_due) AS time_left,
  round(100 * desk_used(policy, plan, priority, created_at, timezone)) AS percent_used,
  priority, subject, requester, company, queue, response_due AS due
FROM tickets
WHERE {OPEN} AND first_response_at IS NULL AND response_due IS NOT NULL
  AND paused_at IS NULL AND julianday(response_due) >= julianday(desk_now())
  AND desk_used(policy, plan, priority, created_at, timezone) >= {float(threshold)}
ORDER BY julianday(response_due), id"""


# Instants are stored in UTC, `…THH:MM:SS[.ffffff]Z`: every one at or after midnight's second
# is >= its first 19 characters, so the index on (action, received_at) finds today's rows
# (julianday says exactly which); without it, every filtered message ever stored was read.
FILTERED_TODAY = """SELECT received_at, reason, json_extract(decision, '$.category') AS category,
  from_addr, subject, json_extract(decision, '$.reasons[0]') AS why, source
FROM messages
WHERE action = 'filtered' AND received_at >= substr(desk_day_start(), 1, 19)
  AND julianday(received_at) >= julianday(desk_day_start())
ORDER BY id DESC"""

REVIEW = """SELECT id, received_at, reason, from_addr, subject,
  'triage review release ' || id AS release
FROM messages
WHERE action = 'review'
ORDER BY id"""

# The thread in order: the ticket's messages and its events, by when each was stored.
TICKET = """SELECT at, entry, who, subject, text, attachments FROM (
  SELECT m.received_at AS at, 0 AS o, m.id AS i, 'message' AS entry, m.from_addr AS who,
    m.subject AS subject, m.body AS text,
    (SELECT group_concat(a.filename, ', ') FROM attachments a
     WHERE a.message_key = m.message_key) AS attachments
  FROM messages m JOIN tickets t ON t.id = m.ticket_id
  WHERE t.number = desk_ticket(:number)
  UNION ALL
  SELECT e.at, 1, e.id, e.kind, NULL, NULL, e.detail, NULL
  FROM events e JOIN tickets t ON t.id = e.ticket_id
  WHERE t.number = desk_ticket(:number)
)
ORDER BY julianday(at), o, i"""

# Every word must appear (each quoted by desk_match: no FTS5 syntax errors from a search box).
SEARCH = """SELECT t.number AS ticket, m.subject,
  snippet(messages_fts, -1, '[', ']', '…', 12) AS excerpt,
  m.from_addr, m.received_at, m.action
FROM messages_fts
JOIN messages m ON m.id = messages_fts.rowid
LEFT JOIN tickets t ON t.id = m.ticket_id
WHERE messages_fts MATCH desk_match(:q)
ORDER BY rank
LIMIT 100"""


async def ticket_head(db, threshold: float, number: str) -> dict | None:
    """The ticket page's header row (Datasette's `Database`), None when there is no such
    ticket; its state as `state_sql` words it, with the threshold bound."""
    rows = await db.execute(
        "SELECT number, subject, requester, requester_name, company, contact, match,"
        " verified, priority, policy, plan, timezone, status, created_at, response_due,"
        " first_response_at, queue, linked_to,"
        " CASE"
        "  WHEN first_response_at IS NOT NULL THEN 'answered'"
        "  WHEN response_due IS NULL THEN 'no target'"
        "  WHEN julianday(response_due) < min(julianday(desk_now()),"
        "   COALESCE(julianday(paused_at), julianday(desk_now()))) THEN 'BREACHED'"
        "  WHEN paused_at IS NOT NULL THEN 'paused'"
        "  WHEN desk_used(policy, plan, priority, created_at, timezone) >= :threshold"
        "   THEN 'at risk'"
        "  ELSE 'in time'"
        " END AS state,"
        " desk_left(response_due) AS time_left, message_key"
        " FROM tickets WHERE number = desk_ticket(:number)",
        {"threshold": float(threshold), "number": number},
    )
    row = rows.first()
    return None if row is None else dict(row)


async def decision_of(db, message_key: str | None) -> str | None:
    """The stored decision (JSON text) of the message `message_key`, None when not stored."""
    rows = await db.execute("SELECT decision FROM messages WHERE message_key = ?", [message_key])
    first = rows.first()
    return None if first is None else first["decision"]
