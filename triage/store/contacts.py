"""The contact directory in the database: import, list, approve, load.

The matcher (triage.contacts) is pure; this is its edge: rows in SQLite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from triage import instants
from triage.config import Config
from triage.core.contact_rows import ImportResult
from triage.core.contacts import Contact


@dataclass(frozen=True, slots=True)
class ImportReport:
    added: int
    updated: int
    rejected: tuple  # contacts_csv.Rejected rows


def load_for(config: Config) -> tuple[Contact, ...]:
    """Contacts stored in the configured database (none when it does not exist yet)."""
    if config.database is not None:
        from triage.store.postgres import PostgresStore

        store = PostgresStore(config.database, config.ticket_prefix)
        try:
            return load(store)
        finally:
            store.close()
    if not config.db.exists():
        return ()
    from triage.store.sqlite import Store

    store = Store(config.db, config.ticket_prefix)
    try:
        return load(store)
    finally:
        store.close()


def load(store) -> tuple[Contact, ...]:
    rows = store.conn.execute(
        "SELECT email, name, company, site, plan, timezone, vip, aliases, approved FROM contacts"
    ).fetchall()
    return tuple(
        Contact.create(
            r[0],
            r[1] or "",
            r[2],
            r[3],
            r[4],
            r[5],
            bool(r[6]),
            json.loads(r[7] or "[]"),
            bool(r[8]) if r[8] is not None else True,
        )
        for r in rows
    )


def save(store, result: ImportResult) -> ImportReport:
    """Upsert every good row in one transaction: all of them or none."""
    added = updated = 0
    store.begin()
    try:
        for c in result.rows:
            exists = store.conn.execute(
                "SELECT 1 FROM contacts WHERE email = ?", (c.email,)
            ).fetchone()
            store.conn.execute(
                "INSERT INTO contacts (email, name, company, site, plan, timezone, vip, aliases, approved)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(email) DO UPDATE SET name=excluded.name, company=excluded.company,"
                " site=excluded.site, plan=excluded.plan, timezone=excluded.timezone, vip=excluded.vip,"
                " aliases=excluded.aliases",
                (
                    c.email,
                    c.name,
                    c.company,
                    c.site,
                    c.plan,
                    c.timezone,
                    int(c.vip),
                    json.dumps(list(c.aliases)),
                    int(c.approved),
                ),
            )
            if exists:
                updated += 1
            else:
                added += 1
        store.commit()
    except BaseException:
        store.rollback()
        raise
    return ImportReport(added, updated, result.rejected)


def approve(store, email: str, config: Config, now: datetime, templates=None) -> list[str]:
    """Approve a sender: their held tickets open and get the acknowledgement they waited for.

    Returns the ticket numbers released.
    """
    from triage.core.replies import AckFacts, render
    from triage.core.templates import Templates
    from triage.engine.ids import ack_ids  # the renderer draws no random ids itself

    templates = templates or Templates.load(config.rules_dir / "templates")

    email = email.strip().lower()
    released: list[str] = []
    store.begin()
    try:
        cur = store.conn.execute("UPDATE contacts SET approved = 1 WHERE email = ?", (email,))
        if cur.rowcount == 0:
            store.conn.execute(
                "INSERT INTO contacts (email, name, company, site, plan, timezone, vip, aliases, approved)"
                " VALUES (?, '', NULL, NULL, NULL, NULL, 0, '[]', 1)",
                (email,),
            )
        held = store.conn.execute(
            "SELECT t.id, t.number, t.subject, t.priority, t.response_due, t.message_key, t.level,"
            " t.timezone, t.requester_name,"
            " (SELECT m.message_id FROM messages m WHERE m.message_key = t.message_key)"
            " FROM tickets t WHERE t.status = 'pending-approval' AND t.requester = ? ORDER BY t.id",
            (email,),
        ).fetchall()
        for ticket_id, number, subject, priority, due, key, level, tz, name, message_id in held:
            store.conn.execute("UPDATE tickets SET status = 'open' WHERE id = ?", (ticket_id,))
            due_at = instants.stored(due) if due else None
            refs = (message_id,) if message_id else ()
            facts = AckFacts(
                email,
                subject or "",
                message_id,
                refs,
                number,
                priority,
                level,
                due_at,
                tz or config.timezone,
                name or "",
            )
            ack = render(facts, templates, config, now, ack_ids())
            store.queue_ack(ticket_id, key, ack, now)
            released.append(number)
        store.commit()
    except BaseException:
        store.rollback()
        raise
    return released
