"""The contact directory in the database: import, list, approve, load.

The matcher (triage.contacts) is pure; this is its edge: rows in SQLite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from triage.config import Config
from triage.contacts import Contact
from triage.contacts_csv import ImportResult


@dataclass(frozen=True, slots=True)
class ImportReport:
    added: int
    updated: int
    rejected: tuple  # contacts_csv.Rejected rows


def load_for(config: Config) -> tuple[Contact, ...]:
    """Contacts stored in the configured database (none when it does not exist yet)."""
    if not config.db.exists():
        return ()
    from triage.store import Store

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
        Contact(
            email=r[0],
            name=r[1] or "",
            company=r[2] or "",
            site=r[3] or "",
            plan=r[4] or None,
            timezone=r[5] or None,
            vip=bool(r[6]),
            aliases=tuple(json.loads(r[7] or "[]")),
            approved=bool(r[8]) if r[8] is not None else True,
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


def approve(store, email: str) -> bool:
    """Mark a sender approved; held tickets of theirs become open."""
    email = email.strip().lower()
    store.begin()
    cur = store.conn.execute("UPDATE contacts SET approved = 1 WHERE email = ?", (email,))
    if cur.rowcount == 0:
        store.conn.execute(
            "INSERT INTO contacts (email, name, company, site, plan, timezone, vip, aliases, approved)"
            " VALUES (?, '', '', '', NULL, NULL, 0, '[]', 1)",
            (email,),
        )
    store.conn.execute(
        "UPDATE tickets SET status = 'open' WHERE status = 'pending-approval' AND requester = ?",
        (email,),
    )
    store.commit()
    return True


def path_label(path: Path) -> str:
    return str(path)
