"""`triage backup`: a consistent copy of the database and the attachment store, online."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from triage.cli.common import CONFIG, DB, no_database
from triage.config import load_config
from triage.errors import TriageError


@click.command("backup")
@CONFIG
@DB
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option("--json", "as_json", is_flag=True, help="What was copied, as one JSON object.")
def backup(config_path, db_path, dest, as_json) -> None:
    """Copy the database and its attachment store into DEST, a new folder, while the daemon
    runs: the database as of one commit (SQLite's online backup), then the attachments,
    then the copy checked (PRAGMA integrity_check, every attachment a row names present).
    DEST defaults to ./triage-backup-<UTC time>. Exits 1 when the copy does not check out.

    Example:

    \b
        triage backup --config /etc/triage/triage.toml backup-2026-03-10
    """
    from triage.store import backup as store_backup

    config = load_config(config_path)
    path = db_path or config.db
    if not path.is_file():
        raise no_database(path)
    if dest is None:
        dest = Path(f"triage-backup-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
    try:
        copied = store_backup.take(path, dest)
    except OSError as exc:
        raise TriageError(
            dest, f"cannot be written: {exc.strerror or exc}", "check the folder's owner and space"
        ) from None
    summary = {
        "db": str(copied.db),
        "files": str(copied.files) if copied.files else None,
        "tickets": copied.tickets,
        "messages": copied.messages,
        "attachments": copied.attachments,
        "integrity": copied.integrity,
    }
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(
            f"{copied.db}: {copied.tickets} tickets, {copied.messages} messages,"
            f" {copied.attachments} stored files; integrity {copied.integrity}"
        )
    if copied.integrity != "ok":
        raise TriageError(
            copied.db,
            f"the copy does not check out: {copied.integrity}",
            "keep the previous backup; run `triage backup` again",
        )


def register(cli: click.Group) -> None:
    cli.add_command(backup)
