"""The store a configuration names: the SQLite file (`[store] db`) or a PostgreSQL database
(`[store] url`), for what opens its own (the daemon, its lease connection, commands).

psycopg is imported only when a url is configured: the SQLite user never needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from triage.errors import TriageError

if TYPE_CHECKING:
    from triage.config import Config
    from triage.store.sqlite import Store


def open_configured(config: Config, busy_timeout: float = 5.0) -> Store:
    """A new connection to the configured store; `busy_timeout`: seconds a write waits for
    another writer's lock."""
    if config.database is None:
        from triage.store.sqlite import Store

        return Store(config.db, config.ticket_prefix, busy_timeout=busy_timeout)
    try:
        from triage.store.postgres import PostgresStore
    except ImportError as exc:
        raise TriageError(
            config.path,
            f"[store] url names a PostgreSQL database, and psycopg cannot be imported ({exc})",
            "pip install 'triage[postgres]', or use [store] db for SQLite",
        ) from None
    return PostgresStore(config.database, config.ticket_prefix, busy_timeout=busy_timeout)
