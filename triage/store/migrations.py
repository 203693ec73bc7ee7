"""Numbered migrations: `PRAGMA user_version` says which have run, each runs once, in order.

A database no release versioned has user_version 0; migration 1 makes it what the last
such release wrote (triage/store/schema.py), whichever earlier release made it and whatever
subset of the tables it has; a new database is made the same way, migration after
migration, so a new database and an upgraded one are the same.

Each migration runs in its own `BEGIN IMMEDIATE` transaction together with the version it
sets: a crash leaves the database at the last whole step, and two processes that open an
old database at once do not both migrate (the second waits for the write lock, reads the
version again and finds the work done). A database newer than this code is refused.

To add a migration, write a function of the sqlite-utils `Database` and append it to
`MIGRATIONS`: its position is its number. Never edit or reorder one that has shipped.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime

from triage import instants, log
from triage.errors import TriageError
from triage.store import deliveries, lifecycle, schema
from triage.store.desk import fts
from triage.store.library import sqlite_utils

Migration = Callable[[sqlite_utils.Database], None]

LOCK_WAIT = 60.0  # seconds a migration waits for the write lock (another process migrating)


class SchemaError(TriageError, RuntimeError):
    """The database's schema cannot be brought to this release's."""


class SchemaTooNew(SchemaError):
    """The database was upgraded by a later release than this one."""


# -- the migrations ---------------------------------------------------------------------
def release_schema(db: sqlite_utils.Database) -> None:
    """1: the tables, columns and indexes of the last unversioned release (9e44bdc).

    Every earlier release wrote a subset of them: what is missing is added, nothing is
    changed or dropped. A table made here is empty, so it gets migration 2's foreign keys
    at once (the same table `link_tables` would rebuild, without the rebuild: a new
    database opens in milliseconds).
    """
    have = set(db.table_names())
    for name, table in schema.RELEASE_TABLES.items():
        if name not in have:
            keys = {k[0]: k for k in table.foreign_keys}
            keys.update({c: (c, o, oc) for t, c, o, oc in schema.FOREIGN_KEYS if t == name})
            db[name].create(  # type: ignore[union-attr]
                table.columns,
                pk=table.pk,
                not_null=set(table.not_null),
                defaults=table.defaults,
                foreign_keys=list(keys.values()),
            )
            continue
        columns = set(db[name].columns_dict)
        for column, kind in table.columns.items():
            if column not in columns:
                db[name].add_column(column, kind)  # type: ignore[union-attr]
    for name, columns, unique in schema.RELEASE_INDEXES:
        db[name].create_index(list(columns), unique=unique, if_not_exists=True)  # type: ignore[union-attr]
    # The release also made this one by hand, the same as idx_outbox_to_addr_created_at.
    db.execute("CREATE INDEX IF NOT EXISTS outbox_to_addr_created ON outbox (to_addr, created_at)")


def link_tables(db: sqlite_utils.Database) -> None:
    """2: foreign keys between tickets, messages, events, outbox, bounces and attachments.

    SQLite adds a key only by rebuilding the table (sqlite-utils `transform`: same rows,
    same ids, same indexes). A reference to a row that is gone (a ticket deleted by hand)
    would fail the key: it is set to NULL, and what it was is kept in an
    `reference_unlinked` event and logged, so nothing is lost without a trace.
    """
    keys = schema.FOREIGN_KEYS
    at = instants.iso_seconds(datetime.now(UTC))
    for table, column, other, other_column in keys:
        _unlink_orphans(db, table, column, other, other_column, at)
    for table in dict.fromkeys(k[0] for k in keys):
        present = {fk.column for fk in db[table].foreign_keys}  # type: ignore[union-attr]
        missing = [(c, o, oc) for t, c, o, oc in keys if t == table and c not in present]
        if missing:
            db[table].transform(add_foreign_keys=missing)  # type: ignore[union-attr]
    left = db.execute("PRAGMA foreign_key_check").fetchall()
    if left:
        raise sqlite3.IntegrityError(f"rows still break a foreign key after linking: {left[:5]}")


def _unlink_orphans(
    db: sqlite_utils.Database, table: str, column: str, other: str, other_column: str, at: str
) -> None:
    orphans = db.execute(
        f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL AND NOT EXISTS"
        f" (SELECT 1 FROM {other} WHERE {other}.{other_column} = {table}.{column})"
    ).fetchall()
    if not orphans:
        return
    db.execute(
        f"UPDATE {table} SET {column} = NULL WHERE id IN (SELECT value FROM json_each(?))",
        [json.dumps([row_id for row_id, _ in orphans])],
    )
    for row_id, was in orphans:
        detail = {"table": table, "id": row_id, "column": column, "was": was, "missing": other}
        db.execute(
            "INSERT INTO events (ticket_id, message_key, kind, at, detail)"
            " VALUES (NULL, NULL, 'reference_unlinked', ?, ?)",
            [at, json.dumps(detail)],
        )
    log.get(component="store").warning(  # each one is in its event; the first few here
        "reference_unlinked",
        table=table,
        column=column,
        missing=other,
        count=len(orphans),
        rows=[row_id for row_id, _ in orphans[:20]],
        was=[was for _, was in orphans[:20]],
    )


def drop_duplicate_index(db: sqlite_utils.Database) -> None:
    """3: one index on outbox (to_addr, created_at), not two."""
    db.execute("DROP INDEX IF EXISTS outbox_to_addr_created")


def deliveries_table(db: sqlite_utils.Database) -> None:
    """4: the outbox of sink deliveries (triage/store/deliveries.py owns its DDL)."""
    for statement in deliveries.DDL.split(";"):
        if statement.strip():
            db.execute(statement)


def delta_links(db: sqlite_utils.Database) -> None:
    """5: a Graph mailbox's ledger: its folder's delta link (IMAP's last_uid), and the
    mailbox and folder the link belongs to (IMAP's uidvalidity)."""
    columns = db["mailbox_state"].columns_dict
    for column in ("delta_link", "delta_scope"):
        if column not in columns:
            db["mailbox_state"].add_column(column, str)  # type: ignore[union-attr]


def full_text_index(db: sqlite_utils.Database) -> None:
    """6: the full-text index over messages' subjects and bodies, its triggers, filled from
    the rows already stored (`triage.store.desk.fts`)."""
    fts.ensure(db.conn)


def ticket_lifecycle(db: sqlite_utils.Database) -> None:
    """7: what a ticket's life needs (triage/store/lifecycle.py): who it is assigned to,
    when it was last closed (a reply after `[tickets] reopen_days` opens a new one) and
    when its response clock was paused (pending, where the policy pauses it)."""
    columns = db["tickets"].columns_dict
    for column in lifecycle.COLUMNS:
        if column not in columns:
            db["tickets"].add_column(column, str)  # type: ignore[union-attr]


def message_bytes(db: sqlite_utils.Database) -> None:
    """8: the bytes of ticket mail up to `messages.KEEP_IN_DB` (triage/store/messages.py),
    for `triage explain T-000123` and `--message KEY`; larger messages keep theirs in the
    file store."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS message_bytes (sha256 TEXT PRIMARY KEY, raw BLOB NOT NULL)"
    )


def index_at_commit(db: sqlite_utils.Database) -> None:
    """9: messages are indexed for search by the store once per batch, at its commit, not
    by a trigger per row (which wrote an index segment per message); the trigger goes."""
    db.conn.execute("DROP TRIGGER IF EXISTS messages_fts_ai")


def years_of_mail(db: sqlite_utils.Database) -> None:
    """10: what a store with years in it needs to stay quick (bench/bigstore.py: 1,000,000
    messages, 300,000 tickets), and the mark `triage prune` leaves (triage/store/prune.py).

    - the open tickets (`tickets --open`, the SLA check, the desk's queue) by a partial
      index that holds only them: the statements name the same `status NOT IN` as it does;
    - the response report by a covering index: it counts every ticket, but reads the
      columns it needs, in priority order, never the wide rows;
    - messages by action (`status`'s held-for-review count, the filtered and quarantined
      listings in id order, the prune), and by action and arrival (the desk's "filtered
      today": it read every filtered message, and Datasette stopped it after 3 s);
    - attachments by content hash (the prune keeps a file another row still names);
    - `messages.pruned_at`: when the prune emptied a filtered message's row (its key and
      fingerprint stay, so the same mail fetched again is still a duplicate).
    """
    for statement in schema.YEARS_INDEXES:
        db.execute(statement)
    if "pruned_at" not in db["messages"].columns_dict:
        db["messages"].add_column("pruned_at", str)  # type: ignore[union-attr]


def leases_table(db: sqlite_utils.Database) -> None:
    """11: the lease rows through which several daemons share mailboxes and timers
    (triage/store/leases.py reads and writes them; on SQLite one daemon holds the flock, and the
    table stays empty)."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL,"
        " expires_at TEXT NOT NULL)"
    )


def report_outcomes(db: sqlite_utils.Database) -> None:
    """12: the response report by an index that holds each ticket's outcome computed
    (`schema.RESPONSE_OUTCOME`), in place of 10's `tickets_report`: the report parsed two
    instants of every answered ticket, 150 ms of a store with years in it (bench/bigstore.py);
    now it counts index entries, and compares instants only for the unanswered."""
    db.execute(schema.OUTCOMES_INDEX)
    db.execute("DROP INDEX IF EXISTS tickets_report")


MIGRATIONS: tuple[Migration, ...] = (
    release_schema,  # 1
    link_tables,  # 2
    drop_duplicate_index,  # 3
    deliveries_table,  # 4
    delta_links,  # 5
    full_text_index,  # 6
    ticket_lifecycle,  # 7
    message_bytes,  # 8
    index_at_commit,  # 9
    years_of_mail,  # 10
    leases_table,  # 11
    report_outcomes,  # 12
)
LATEST = len(MIGRATIONS)


# -- the runner -------------------------------------------------------------------------
def version(db: sqlite_utils.Database) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def upgrade(db: sqlite_utils.Database, where: str) -> list[int]:
    """Run the migrations this database has not had; the numbers run (none: already latest).

    `where` names the database in errors. The caller holds no transaction.
    """
    at = version(db)
    _refuse_newer(at, where)
    if at == LATEST:  # the common case: no write, no lock (read-only copies open too)
        return []
    conn = db.conn
    fresh = not db.table_names()  # a new database: its making is not news
    busy = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    # Keys off while tables are rebuilt (PRAGMA foreign_keys is ignored in a transaction);
    # link_tables checks them itself before its commit.
    conn.execute("PRAGMA foreign_keys=OFF")
    _pragma(conn, "busy_timeout", max(busy, int(LOCK_WAIT * 1000)))
    done: list[int] = []
    try:
        for number, migration in enumerate(MIGRATIONS, start=1):
            started = time.perf_counter()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise _cannot(where, exc) from exc
            try:
                at = version(db)  # again, under the lock: another process may have migrated
                _refuse_newer(at, where)
                if at >= number:
                    conn.execute("COMMIT")
                    continue
                migration(db)
                _pragma(conn, "user_version", number)
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise _cannot(where, exc, number) from exc
                raise
            done.append(number)
            logger = log.get(component="store")
            (logger.debug if fresh else logger.info)(
                "schema_migrated",
                db=where,
                version=number,
                migration=migration.__name__,
                ms=round((time.perf_counter() - started) * 1000, 1),
            )
    finally:
        _pragma(conn, "busy_timeout", busy)
        conn.execute("PRAGMA foreign_keys=ON")
    return done


def _pragma(conn: sqlite3.Connection, name: str, value: int) -> None:
    """A PRAGMA that sets an integer (PRAGMA takes no bound parameters)."""
    conn.execute(f"PRAGMA {name}={int(value)}")


def _refuse_newer(at: int, where: str) -> None:
    if at > LATEST:
        raise SchemaTooNew(
            where,
            f"the database is at schema version {at}, this triage knows versions up to"
            f" {LATEST}: a later release upgraded it",
            "run the triage release that upgraded it, or a later one: an older release"
            " cannot use it (or restore a backup taken before the upgrade)",
        )


def _cannot(where: str, exc: sqlite3.Error, number: int | None = None) -> SchemaError:
    step = f"migration {number} ({MIGRATIONS[number - 1].__name__})" if number else "migration"
    return SchemaError(
        where,
        f"{step} of the schema to version {LATEST} failed: {exc}; the database is unchanged by it",
        "open it once where triage can write it and its folder (a read-only copy of an older"
        " database cannot be upgraded), and stop any other triage using it if it is locked",
    )
