"""`triage filtered`: the mail that was filtered, by category or rule; spam is listed here.

Filtered mail gets no ticket and no acknowledgement, but it is stored; an upstream
spam verdict can be wrong, so the operator needs one command to look at it.
"""

from __future__ import annotations

import json
import sys

import click

from triage.cli.common import CONFIG, DB, open_store, print_table, where
from triage.config import load_config


@click.command("filtered")
@CONFIG
@DB
@click.option(
    "--category",
    help="Only this filter category (spam, bulk, report, bounce, autoreply, notification, loop).",
)
@click.option("--reason", help="Only this filter rule id (e.g. spam-scl).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message.")
def filtered(config_path, db_path, category, reason, limit, as_json) -> None:
    """List filtered messages, newest first: what no ticket was opened for, and why.

    Example:

    \b
        triage filtered --category spam
    """
    from triage.core.filters import CATEGORIES

    if category and category not in CATEGORIES:
        raise click.BadParameter(
            f"{category!r} is not a category; use one of {', '.join(CATEGORIES)}",
            param_hint="--category",
        )
    config = load_config(config_path)
    store = open_store(config, db_path)
    try:
        rows = store.filtered(category, reason, limit)
    finally:
        store.close()
    if as_json:
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    print_table(
        f"Filtered in {where(config, db_path)}" + (f" ({category})" if category else ""),
        ("received (UTC)", "reason", "category", "from", "subject"),
        (
            (
                (r["received_at"] or "")[:16],
                r["reason"] or "",
                r["category"] or "",
                r["from_addr"] or "",
                (r["subject"] or "")[:60],
            )
            for r in rows
        ),
    )


def register(cli: click.Group) -> None:
    cli.add_command(filtered)


__all__ = ["register"]
