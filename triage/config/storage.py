"""`[store] url`: a PostgreSQL database instead of the SQLite file, and where its password
comes from (a file, the environment or a systemd credential: never the URL itself).

    [store]
    url = "postgresql://triage@db.msp.example:5432/triage"
    password_file = "/etc/triage/pg-password"
    files = "/var/lib/triage/files"   # attachments, quarantined and held mail (default: beside
                                      # the config file, triage.files)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from triage.config import credentials, fields
from triage.config.credentials import Secret
from triage.errors import ConfigError

SCHEMES = ("postgresql", "postgres")
KEYS = frozenset({"db", "url", "files", *credentials.PASSWORD_KEYS})
EXAMPLE = 'url = "postgresql://triage@db.example:5432/triage"'


@dataclass(frozen=True, slots=True)
class Database:
    """A PostgreSQL store: its URL (no password in it) and the password's source, if any."""

    url: str
    password: Secret | None = None
    # attachments, quarantined and held mail, and large messages' bytes: a folder on this
    # machine (SQLite keeps them beside its file, DB.files)
    files: Path = Path("triage.files")

    @property
    def shown(self) -> str:
        """The URL as errors and logs show it (it holds no secret)."""
        return self.url


def parse(path: Path | str, table: dict) -> Database | None:
    """`[store]`'s url and password source; None when there is no url (SQLite)."""
    given = [k for k in (*credentials.PASSWORD_KEYS, "files") if k in table]
    if "url" not in table:
        if given:
            raise ConfigError(
                path,
                f"store.{given[0]}",
                "is for a PostgreSQL store, and there is no url",
                f"add {EXAMPLE}, or remove {given[0]}",
            )
        return None
    if "db" in table:
        raise ConfigError(
            path,
            "store.url",
            "db and url name two stores: the SQLite file and a PostgreSQL database",
            "keep one: url for PostgreSQL, or db for the SQLite file",
        )
    url = str(table["url"]).strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(path, "store.url", f"is not a URL ({exc})", f"write {EXAMPLE}") from None
    if parts.scheme not in SCHEMES:
        raise ConfigError(
            path,
            "store.url",
            f"{parts.scheme or '(no scheme)'!r} is not postgresql://",
            f'write {EXAMPLE}, or db = "triage.db" for SQLite',
        )
    if parts.password is not None or any(
        k.lower() == "password" for k, _ in parse_qsl(parts.query)
    ):
        raise ConfigError(
            path,
            "store.url",
            "holds a password (the config file is no place for it)",
            "remove it from the URL and add password_file, password_env or password_credential",
        )
    if not parts.hostname and "host=" not in parts.query:
        raise ConfigError(
            path, "store.url", "names no host", f"write {EXAMPLE} (the server's host name)"
        )
    if not parts.path.strip("/"):
        raise ConfigError(
            path, "store.url", "names no database", f"write {EXAMPLE} (the database after /)"
        )
    del port  # read above only to refuse a port that is not a number
    files = str(table.get("files", "triage.files")).strip()
    if not files:
        raise ConfigError(path, "store.files", "is empty", 'write files = "/var/lib/triage/files"')
    return Database(
        url,
        credentials.password(path, "store", table, required=False),
        Path(fields.beside(path, files)),
    )
