"""What every command module shares: the --config and --db options, instants, opening things.

Errors become click.ClickException here, naming the file, key and fix, so each
command stays a few lines long.
"""

from __future__ import annotations

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
    from triage.store import Store

    path = db_path or config.db
    if not create and not path.is_file():
        raise click.ClickException(
            f"{path}: no database here; fix: run `triage replay` or `triage run` first, or pass --db"
        )
    return Store(path, config.ticket_prefix)
