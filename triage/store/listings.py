"""What commands list from the database: the outbox, and the acknowledgements a replay
queued (which `triage replay --acks-dir` writes out instead of sending)."""

from __future__ import annotations

from dataclasses import dataclass

from triage.store.sqlite import Store


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """One acknowledgement queued in the outbox, with its ticket's number."""

    id: int
    ticket: str
    to: str
    subject: str
    raw: str


def outbox_mark(store: Store) -> int:
    """The outbox's newest row id (0 when empty): rows queued later have higher ids."""
    return store.conn.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()[0]


def acknowledgements_after(store: Store, mark: int) -> list[Acknowledgement]:
    """Acknowledgements queued after `outbox_mark` returned `mark`, oldest first."""
    rows = store.conn.execute(
        "SELECT o.id, t.number, o.to_addr, o.subject, o.raw FROM outbox o"
        " JOIN tickets t ON t.id = o.ticket_id WHERE o.id > ? ORDER BY o.id",
        (mark,),
    ).fetchall()
    return [Acknowledgement(*row) for row in rows]


def outbox_counts(store: Store) -> dict[str, int]:
    """Outbox rows by status (pending, sending, sent, failed, bounced)."""
    return dict(
        store.conn.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall()
    )


def outbox_waiting(store: Store) -> list[dict]:
    """Rows still to send or that failed, with their ticket's number, oldest first."""
    return list(
        store.db.query(
            "SELECT o.id, t.number AS ticket, o.to_addr, o.subject, o.status, o.attempts,"
            " o.last_error, o.created_at, o.next_attempt_at FROM outbox o"
            " LEFT JOIN tickets t ON t.id = o.ticket_id"
            " WHERE o.status IN ('pending', 'sending', 'failed', 'bounced') ORDER BY o.id"
        )
    )
