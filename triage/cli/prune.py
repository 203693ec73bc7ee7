"""`triage prune`: remove filtered mail's contents and kept bytes no longer needed, in batches."""

from __future__ import annotations

import json
from datetime import timedelta

import click

from triage.cli.common import CONFIG, DB, instant, open_store
from triage.config import load_config


@click.command("prune")
@CONFIG
@DB
@click.option(
    "--older-than",
    "days",
    type=click.IntRange(min=1),
    required=True,
    help="Only what arrived more than DAYS days ago.",
    metavar="DAYS",
)
@click.option("--dry-run", is_flag=True, help="Count what would go; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="What went, as one JSON object.")
@click.option("--now", "now_text", help="The instant DAYS count back from (default: now).")
def prune(config_path, db_path, days, dry_run, as_json, now_text) -> None:
    """Empty filtered mail older than DAYS and delete the bytes nothing needs any more.

    A filtered message keeps its key, Message-ID and fingerprint (fetched again, it is still
    a duplicate) and its action, rule and category; its subject, sender, source, reasons,
    attachment rows, kept bytes and files go. Also the kept bytes of quarantined and held
    mail no row waits on. Never a ticket's messages, mail held for review or quarantined,
    the outbox or the events. Small batches, each its own short write transaction: safe
    while the daemon runs.

    Example:

    \b
        triage prune --older-than 365 --dry-run
    """
    from triage.store import prune as store_prune

    now = instant(now_text, "--now")
    config = load_config(config_path)
    store = open_store(config, db_path)
    try:
        result = store_prune.prune(store, now - timedelta(days=days), now, dry_run)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"older_than_days": days, **result.as_json()}))
        return
    verb = "would free" if dry_run else "freed"
    click.echo(
        f"{'would prune' if dry_run else 'pruned'} mail before {result.before}:"
        f" {result.messages} filtered messages emptied, {result.attachments} attachment rows,"
        f" {result.kept_bytes} kept messages' bytes, {result.files} files;"
        f" {verb} {result.bytes_freed:,} bytes"
        + (
            ""
            if dry_run
            else f" in {result.batches} batches (longest write lock"
            f" {max(result.lock_ms, default=0.0):.0f} ms)"
        )
    )


def register(cli: click.Group) -> None:
    cli.add_command(prune)
