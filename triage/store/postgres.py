"""PostgreSQL through psycopg 3, behind the same interface as the SQLite store.

`PostgresStore` is `Store` (store/sqlite.py) with another connection: its queries, and the
modules that take a store (records, facts, listings, deliveries, tickets ...), run
unchanged, their statements spelled for PostgreSQL by store/dialect.py. What differs is
here: opening (the URL and its password, the schema in store/postgres_schema.py), a
batch's transaction (serialised with a transaction-level advisory lock, as SQLite's
BEGIN IMMEDIATE serialises writers, because a ticket's number is decided from MAX(id)
read in it), and where the attachment folder is (`[store] files`, not beside a file).

psycopg is imported here only, and this module only when `[store] url` is configured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from triage import log
from triage.config.storage import Database
from triage.errors import TriageError
from triage.store import dialect, postgres_schema
from triage.store.modes import Modes
from triage.store.sqlite import Store

# pg_advisory_xact_lock key held by a batch's transaction: one writer at a time, as SQLite
BATCH_LOCK = 0x7472696167650001

# Errors of the server, the connection or the machine, never of one message: the batch stops
# (triage/engine/batch.py), as for SQLite's OperationalError.
SYSTEMIC = (psycopg.OperationalError, psycopg.InterfaceError, psycopg.errors.InternalError)


class Unreachable(TriageError, RuntimeError):
    """The PostgreSQL server refused the connection, or could not be reached."""


class Cursor:
    """A psycopg cursor as the store reads sqlite3's: fetchone, fetchall, rowcount, and a
    `lastrowid` of None (PostgreSQL indexes messages itself: store/postgres_schema.py 6)."""

    lastrowid = None

    def __init__(self, cursor: psycopg.Cursor) -> None:
        self._cursor = cursor

    def fetchone(self) -> Any:
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list:
        return self._cursor.fetchall() if self._cursor.description else []

    def __iter__(self) -> Iterator:
        return iter(self.fetchall())

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def description(self):
        return self._cursor.description


class Connection:
    """A psycopg connection in autocommit mode, taking the store's SQL (store/dialect.py):
    transactions are the explicit BEGIN/COMMIT the store sends, as with sqlite3's.

    Given `reopen`, a connection the server dropped (a restart, a failover, a proxy's idle
    cut) is opened again at the next statement, so a long-lived daemon goes on once the
    server is back: never inside a batch (`batch_open`), whose statements must all be in
    its one transaction; the batch fails, is rolled back there, and comes back.
    """

    dialect = "postgresql"

    def __init__(
        self, raw: psycopg.Connection, reopen: Callable[[], psycopg.Connection] | None = None
    ) -> None:
        self.raw = raw
        self.reopen = reopen
        self.batch_open = False

    def _live(self) -> psycopg.Connection:
        if (self.raw.closed or self.raw.broken) and self.reopen and not self.batch_open:
            self.raw = self.reopen()
        return self.raw

    def execute(self, sql: str, params: Sequence | dict | None = None) -> Cursor:
        return Cursor(self._live().execute(dialect.postgres(sql), params or ()))

    def executemany(self, sql: str, rows: Iterable[Sequence]) -> None:
        with self._live().cursor() as cur:
            cur.executemany(dialect.postgres(sql), list(rows))

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def close(self) -> None:
        self.raw.close()


class Rows:
    """What the store asks of sqlite-utils' Database: rows as dicts, and the table names."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def query(self, sql: str, params: Sequence | dict | None = None) -> Iterator[dict]:
        with self.conn._live().cursor(row_factory=dict_row) as cur:
            cur.execute(dialect.postgres(sql), params or ())
            yield from cur.fetchall() if cur.description else []

    def execute(self, sql: str, params: Sequence | dict | None = None) -> Cursor:
        return self.conn.execute(sql, params)

    def table_names(self) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                " ORDER BY tablename"
            ).fetchall()
        ]


def connect(database: Database, timeout: float = 15.0) -> psycopg.Connection:
    """A connection to `database`, its password read from its source now."""
    password = database.password.reveal() if database.password is not None else None
    try:
        return psycopg.connect(
            database.url,
            autocommit=True,
            connect_timeout=max(1, int(timeout)),
            application_name="triage",
            **({"password": password} if password is not None else {}),
        )
    except psycopg.OperationalError as exc:
        raise Unreachable(
            database.shown,
            f"cannot connect to the PostgreSQL store: {str(exc).strip().splitlines()[-1]}",
            "check [store] url (host, port, database, user) and its password source, and"
            " that the server accepts this machine",
        ) from None


def read_only(database: Database, timeout: float = 5.0) -> Connection:
    """A connection that cannot write (every transaction READ ONLY): what the report and the
    metrics read through (store/desk/queries.py), as SQLite's `mode=ro` connection."""
    conn = Connection(connect(database, timeout))
    conn.execute("SET default_transaction_read_only = on")
    return conn


class PostgresStore(Store):
    """The store on a PostgreSQL database (`[store] url`)."""

    dialect = "postgresql"
    systemic = SYSTEMIC

    def __init__(self, database: Database, prefix: str = "T-", busy_timeout: float = 5.0) -> None:
        self.prefix = prefix
        self.busy_timeout = busy_timeout
        self.database = database
        self.path = None
        # attachments and kept mail: a folder on this machine ([store] files), made as
        # SQLite's DB.files is (store/modes.py)
        self.files = database.files
        self.modes = Modes.beside(self.files.parent)
        # connected first: a server that is not there leaves nothing made on this machine
        self.conn = Connection(self._open(), self._reopen)  # type: ignore[assignment]
        try:
            self.modes.mkdir(self.files)
            self.modes.narrow(self.files)
        except OSError:  # a read-only place: nothing is written
            pass
        self.db = Rows(self.conn)  # type: ignore[assignment]
        postgres_schema.upgrade(self.conn, database.shown)  # type: ignore[arg-type]
        self._unindexed = None
        self.outbox_status = "pending"

    def _open(self) -> psycopg.Connection:
        raw = connect(self.database, self.busy_timeout)
        # a statement waiting on a lock longer than a SQLite write would wait fails alike
        raw.execute(
            "SELECT set_config('lock_timeout', %s, false)", (f"{int(self.busy_timeout * 1000)}ms",)
        )
        return raw

    def _reopen(self) -> psycopg.Connection:
        """A new connection for one the server dropped; unreachable still, the driver's own
        error (systemic: the caller waits and tries again, as for a failed statement)."""
        try:
            raw = self._open()
        except Unreachable as exc:
            raise psycopg.OperationalError(str(exc)) from None
        log.get(component="store").info("store_reconnected", database=self.database.shown)
        return raw

    @property
    def in_batch(self) -> bool:
        """A batch's transaction is open: the connection knows, as it must not reopen then."""
        return self.conn.batch_open

    def begin(self) -> None:
        if not self.in_batch:
            self.conn.execute("BEGIN")
            self.conn.batch_open = True
            self.conn.execute("SELECT pg_advisory_xact_lock(?)", (BATCH_LOCK,))

    def commit(self) -> None:
        if self.in_batch:
            self.conn.execute("COMMIT")
            self.conn.batch_open = False

    def rollback(self) -> None:
        """Roll the batch back; on a connection the server dropped, it is rolled back there
        already (and the error that said so is the one the caller sees, not this one's)."""
        if self.in_batch:
            self.conn.batch_open = False
            if not (self.conn.raw.closed or self.conn.raw.broken):
                self.conn.execute("ROLLBACK")

    def index_later(self, message_row: int | None) -> None:
        """Nothing: PostgreSQL keeps the search column itself."""

    def index_pending(self) -> None:
        """Nothing: PostgreSQL keeps the search column itself."""

    def close(self) -> None:
        """Roll back what is open and close (a dropped connection too: see rollback)."""
        if self.conn.raw.closed:
            return
        try:
            self.rollback()
        finally:
            self.conn.close()
