"""SQLite through sqlite-utils: the connection, its transactions, the batch's read and write.

A message's rows (message, ticket or append, outbox, events) are written
together or not at all; the caller commits in small groups and acknowledges
a message to its source only after the commit that holds it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from triage import instants
from triage.core.decision import Decision
from triage.core.facts import Facts, Needs
from triage.core.outgoing import Rendered
from triage.core.replies import Ack
from triage.store import facts as facts_mod
from triage.store import migrations, records
from triage.store.desk import fts
from triage.store.library import sqlite_utils
from triage.store.modes import Modes


def _iso(value: datetime | None) -> str | None:
    return instants.iso(value) if value else None


class Store:
    """The database and the attachment folder beside it."""

    dialect = "sqlite"  # store/postgres.py's PostgresStore: "postgresql"
    # errors of the database rather than of one message, beyond sqlite3's (engine/batch.py)
    systemic: tuple[type[BaseException], ...] = ()

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
        # Owner-only from the first byte (tickets hold customers' mail), or the group's too
        # in a folder open to its group (store/modes.py). SQLite gives the -wal and -shm
        # files the database file's mode.
        self.modes = Modes.beside(self.path.parent)
        if not self.path.exists():
            os.close(self.modes.create(self.path, os.O_WRONLY))
        self._open(str(self.path))
        self.files = self.path.with_name(self.path.name + ".files")
        # The attachment and quarantine folder, the same: made here, because
        # mkdir(parents=True) below it would make it with the umask's 0755; and
        # narrowed when an earlier release made it so.
        try:
            self.modes.mkdir(self.files)
            self.modes.narrow(self.files)
        except OSError:  # a read-only place (`triage tickets` on a copy): nothing is written
            pass

    def _open(self, where: str) -> None:
        self.conn = sqlite3.connect(
            where, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout
        )  # timeout: SQLite's busy timeout, how long a write waits for another's lock
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA wal_autocheckpoint=1000")
        # A message written in a savepoint (a batch written again after one of its messages
        # failed, engine/batch.py) has a statement journal (the pages it changed, as they
        # were), which SQLite keeps in memory up to 64 KiB and then in a temporary file: a
        # message's rows touch more than that (its row, the tickets', events', outbox's and
        # kept bytes' leaves and their indexes), so three write calls in four went to a file
        # deleted a moment later. In memory, for this connection: a journal is as large as
        # one message's pages.
        self.conn.execute("PRAGMA temp_store=MEMORY")
        # A page cache of 32 MiB (SQLite's default is 2 MiB): a store with years in it has
        # index trees deeper than 2 MiB of pages, and each batch read them again from the
        # file; replay into a 1,000,000-message store went from 89 % to 94 – 101 % of the
        # rate into an empty one (bench/bigstore.py). Memory is taken only as pages are read.
        self.conn.execute("PRAGMA cache_size=-32768")  # in KiB
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.db = sqlite_utils.Database(self.conn)
        # The schema lives in store/schema.py and store/migrations.py; an old database is
        # upgraded here, once, and a newer one refused.
        migrations.upgrade(self.db, where)
        self.in_batch = False  # a batch's transaction is open (begun, not ended)
        self._unindexed: int | None = None  # the first message row this batch has not indexed
        # Replay writes would-be acknowledgements with status "replay": never sent.
        self.outbox_status = "pending"

    # -- batches ------------------------------------------------------------
    def begin(self) -> None:
        if not self.in_batch:
            self.conn.execute("BEGIN IMMEDIATE")
            self.in_batch = True

    def commit(self) -> None:
        if self.in_batch:
            self.index_pending()
            self.conn.execute("COMMIT")
            self.in_batch = False

    def rollback(self) -> None:
        self._unindexed = None
        if self.in_batch:
            self.conn.execute("ROLLBACK")
            self.in_batch = False

    # -- the full-text index (store/desk/fts.py) ------------------------------------------
    def index_later(self, message_row: int | None) -> None:
        """A message row was inserted: index it with the rest of its batch, just before the
        commit (one FTS5 write per batch, not a segment per message); outside a batch, now."""
        if message_row is None:
            return
        if not self.in_batch:
            fts.index_from(self.conn, message_row)
        elif self._unindexed is None or message_row < self._unindexed:
            self._unindexed = message_row

    def index_pending(self) -> None:
        """Index the rows this batch inserted so far (before a commit, or a delete that could
        touch them: FTS5 must never be told to forget a row it was not given)."""
        if self._unindexed is not None:
            fts.index_from(self.conn, self._unindexed)
            self._unindexed = None

    def close(self) -> None:
        self.rollback()
        self.conn.close()

    # -- read and write of a batch (store/facts.py, store/records.py) --------------
    def facts_for(self, needs: Needs, now: datetime) -> Facts:
        """Everything a batch's decisions need from the past, in one query (store/facts.py)."""
        return facts_mod.read(self, needs, now)

    def record(self, d: Decision, now: datetime, ack: Ack | None = None) -> Decision:
        """Write one decided message's rows in a savepoint (store/records.py); `ack`, the
        rendered acknowledgement, is queued with them."""
        return records.write(self, Rendered(d, ack), now)

    def queue_ack(self, ticket_id: int, key: str | None, ack: Ack, now: datetime) -> None:
        """An acknowledgement row in the outbox, in the caller's transaction."""
        records.queue_ack(self, ticket_id, key, ack, now)

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
            self.modes.mkdir(target.parent)
            fd = self.modes.create(target, os.O_WRONLY | os.O_TRUNC)
            with os.fdopen(fd, "wb") as fh:
                fh.write(raw)
        return target

    # -- queries ------------------------------------------------------------
    def tickets(self, open_only: bool = False) -> Iterator[dict]:
        """Ticket rows in number order (deadline filters live in triage.tracking); `open_only`:
        not resolved or closed."""
        sql = "SELECT * FROM tickets" + (
            " WHERE status NOT IN ('resolved', 'closed')" if open_only else ""
        )
        yield from self.db.query(sql + " ORDER BY id")

    def filtered(
        self, category: str | None = None, reason: str | None = None, limit: int = 100
    ) -> list[dict]:
        """Filtered messages, newest first; `category` is the filter rule's (e.g. spam)."""
        return list(
            self.db.query(
                "SELECT id, received_at, reason, json_extract(decision, '$.category') AS category,"
                " from_addr, subject, message_id, source FROM messages WHERE action = 'filtered'"
                " AND (CAST(:category AS TEXT) IS NULL"  # typed: PostgreSQL must know it
                " OR json_extract(decision, '$.category') = :category)"
                " AND (CAST(:reason AS TEXT) IS NULL OR reason = :reason) ORDER BY id DESC LIMIT :limit",
                {"category": category or None, "reason": reason or None, "limit": limit},
            )
        )

    def outbox(self, statuses: tuple[str, ...] = ("pending", "failed")) -> list[dict]:
        marks = ",".join("?" for _ in statuses)
        return list(
            self.db.query(f"SELECT * FROM outbox WHERE status IN ({marks}) ORDER BY id", statuses)
        )
