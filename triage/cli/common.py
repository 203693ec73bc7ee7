"""What every command module shares: the --config and --db options, instants, opening things.

Errors become click.ClickException here, naming the file, key and fix, so each
command stays a few lines long.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import click

from triage.config import Config, ConfigError, load_config

CONFIG = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="TRIAGE_CONFIG",
    help="TOML configuration file (default: built-in defaults).",
)
DB = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Database (default from config: ./triage.db).",
)


def instant(value: str | None, hint: str = "--now") -> datetime:
    """ISO 8601 with a zone -> aware UTC datetime; None -> the current time."""
    if not value:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not ISO 8601; e.g. 2026-03-10T09:30:00Z", param_hint=hint
        ) from None
    if parsed.tzinfo is None:
        raise click.BadParameter(
            f"{value!r} has no time zone; give one, e.g. 2026-03-10T09:30:00Z or +01:00",
            param_hint=hint,
        )
    return parsed.astimezone(UTC)


def config_or_fail(config_path: Path | None) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def open_store(config: Config, db_path: Path | None, create: bool = False):
    """The store at --db or the configured path; an existing one unless `create`."""
    path = db_path or config.db
    if not create and not path.is_file():
        raise click.ClickException(
            f"{path}: no database here; fix: run `triage replay` or `triage run` first, or pass --db"
        )
    return store_at(path, config.ticket_prefix)


# How long a command waits for the write lock while another process (the daemon writing
# a batch, the SLA timer) holds it; the daemon's batches take well under a second.
WAIT_SECONDS = 15.0


def store_at(path: Path | None, prefix: str):
    """A Store for a command: waits WAIT_SECONDS for the lock; the path is remembered
    so that a lock held longer is reported with it (see `busy_error`)."""
    from triage.store.sqlite import Store

    ctx = click.get_current_context(silent=True)
    if ctx is not None and path is not None:
        ctx.meta["triage.db"] = path
    return Store(path, prefix, busy_timeout=WAIT_SECONDS)


def busy_error(exc: BaseException) -> click.ClickException | None:
    """The error to show for a database still locked after the wait; None for other errors."""
    if not isinstance(exc, sqlite3.OperationalError):
        return None
    text = str(exc).lower()
    if "locked" not in text and "busy" not in text:
        return None
    ctx = click.get_current_context(silent=True)
    where = ctx.meta.get("triage.db", "the database") if ctx is not None else "the database"
    return click.ClickException(
        f"{where}: the database is locked by another process (the daemon writing a batch, or "
        f"another command) and stayed locked for {WAIT_SECONDS:g} s; the command stopped "
        "without finishing; fix: run it again (what was already stored is not stored twice); "
        "`triage status` shows what the daemon is doing"
    )


class Group(click.Group):
    """The `triage` group: a database locked for too long is a message, not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except sqlite3.OperationalError as exc:
            friendly = busy_error(exc)
            if friendly is None:
                raise
            raise friendly from None
