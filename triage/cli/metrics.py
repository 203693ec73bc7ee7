"""`triage metrics`: the Prometheus families from the database, for node-exporter's textfile
collector (the daemon serves the same on `[daemon] metrics_listen`)."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import click

from triage.cli.common import CONFIG, DB, no_database, systemic
from triage.cli.common import where as where_
from triage.config import load_config
from triage.errors import TriageError


@click.command("metrics")
@CONFIG
@DB
@click.option(
    "--textfile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the text to this file atomically (node-exporter's textfile collector"
    " directory, a name ending in .prom) instead of printing it.",
)
def metrics(config_path, db_path, textfile) -> None:
    """Print the metrics (Prometheus text format) read from the database, read-only.

    Messages by action and reason, open tickets by priority, breached and at-risk tickets,
    the outbox, each mailbox's state and last success, the ingest latency histogram.

    Example:

    \b
        triage metrics --db /var/lib/triage/triage.db --textfile /var/lib/prometheus/node-exporter/triage.prom
    """
    from triage.core import sla as sla_mod
    from triage.desk import metrics as desk_metrics

    config = load_config(config_path)
    # the SQLite file, or the PostgreSQL database of `[store] url` (read through a READ ONLY
    # connection: store/desk/readonly.py)
    path = config.database if db_path is None and config.database is not None else None
    if path is None:
        path = db_path or config.db
        if not path.is_file():
            raise no_database(path)
    policies = sla_mod.load_policies(config.sla_dir)
    if textfile is not None and not textfile.parent.is_dir():
        raise TriageError(
            f"--textfile {textfile}",
            f"no folder {textfile.parent}",
            "give a file in node-exporter's --collector.textfile.directory",
        )
    try:
        if textfile is None:
            sys.stdout.write(desk_metrics.text(path, policies))
        else:
            desk_metrics.write_textfile(path, textfile, policies)
    except OSError as exc:
        if "fix:" in str(exc):  # the read-only connection's own error names file and fix
            raise TriageError(str(exc)) from None
        where = f"--textfile {textfile}" if textfile is not None else where_(config, db_path)
        raise TriageError(
            where, f"cannot be written: {exc.strerror or exc}", "check the folder's owner and mode"
        ) from None
    except (sqlite3.Error, *systemic(path)) as exc:
        raise TriageError(
            where_(config, db_path),
            f"cannot be read: {str(exc).strip()}",
            "pass the daemon's database (--db, or --config)",
        ) from None


def register(cli: click.Group) -> None:
    cli.add_command(metrics)
