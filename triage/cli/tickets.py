"""`triage tickets`: the tickets in a database, optionally only open, breached or at risk."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from triage.cli.common import CONFIG, instant, open_store, print_table, where
from triage.config import load_config


@click.command()
@CONFIG
@click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--open", "open_only", is_flag=True, help="Only tickets not resolved or closed.")
@click.option(
    "--breached", is_flag=True, help="Only tickets past their response deadline with no response."
)
@click.option(
    "--at-risk",
    "at_risk",
    is_flag=True,
    help="Only unanswered tickets that used 75 % of their allowed time.",
)
@click.option(
    "--now", "now_text", help="The instant --breached and --at-risk compare with (default: now)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per ticket.")
def tickets(config_path, db_path, open_only, breached, at_risk, now_text, as_json) -> None:
    """List tickets.

    Example:

    \b
        triage tickets --open --breached
    """
    from triage.core import sla as sla_mod
    from triage.service import tracking

    now = instant(now_text, "--now")
    config = load_config(config_path)
    store = open_store(config, db_path)
    try:
        rows = list(store.tickets(open_only))
        if breached:
            keep = set(tracking.breached(store, now))
            rows = [r for r in rows if r["number"] in keep]
        if at_risk:
            keep = set(tracking.at_risk(store, sla_mod.load_policies(config.sla_dir), now))
            rows = [r for r in rows if r["number"] in keep]
    finally:
        store.close()
    if as_json:
        for r in rows:
            sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
        return
    print_table(
        f"Tickets in {where(config, db_path)}",
        ("ticket", "status", "priority", "due (UTC)", "requester", "match", "subject"),
        (
            (
                r["number"],
                r["status"],
                r["priority"] or "",
                (r["response_due"] or "none")[:16],
                r["requester"],
                r["match"] or "",
                (r["subject"] or "")[:60],
            )
            for r in rows
        ),
    )


def register(cli: click.Group) -> None:
    cli.add_command(tickets)
