"""Per-mailbox state in the database: UID bookkeeping and health, for the daemon and `triage status`.

The daemon writes it as it goes; `triage status` reads it from another process,
so what an operator sees is what the daemon last knew, without asking it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from triage import instants
from triage.store.sqlite import Store


def _now() -> str:
    return instants.iso_seconds(datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class Position:
    uidvalidity: int | None
    last_uid: int


def position(store: Store, mailbox: str) -> Position:
    row = store.conn.execute(
        "SELECT uidvalidity, last_uid FROM mailbox_state WHERE mailbox = ?", (mailbox,)
    ).fetchone()
    return Position(row[0], row[1] or 0) if row else Position(None, 0)


def update(store: Store, mailbox: str, **fields: object) -> None:
    """Upsert `fields` for `mailbox` (autocommit when no batch is open)."""
    fields["updated_at"] = _now()
    names = sorted(fields)
    store.conn.execute(
        f"INSERT INTO mailbox_state (mailbox, {', '.join(names)}) VALUES (?, {', '.join('?' for _ in names)})"
        f" ON CONFLICT(mailbox) DO UPDATE SET {', '.join(f'{n} = excluded.{n}' for n in names)}",
        (mailbox, *(fields[n] for n in names)),
    )


def rows(store: Store) -> list[dict]:
    return list(store.db.query("SELECT * FROM mailbox_state ORDER BY mailbox"))


def now_text() -> str:
    return _now()


def failing_since(store: Store, mailbox: str) -> str | None:
    """When `mailbox` began its current failing spell (as stored), or None."""
    row = store.conn.execute(
        "SELECT failing_since FROM mailbox_state WHERE mailbox = ?", (mailbox,)
    ).fetchone()
    return row[0] if row else None


def delta_link(store: Store, mailbox: str, scope: str) -> str | None:
    """A Graph mailbox's ledger: where its next delta query starts (None: the whole folder).

    `scope` names the mailbox and folder watched now; a link stored for another (the
    configuration changed `user` or `folder`) is not used. Written with `update(...,
    delta_link=..., delta_scope=...)` only once every message of the page it follows is
    committed and filed, so a crash repeats at most that page."""
    row = store.conn.execute(
        "SELECT delta_link, delta_scope FROM mailbox_state WHERE mailbox = ?", (mailbox,)
    ).fetchone()
    return row[0] if row and row[0] and row[1] == scope else None
