"""`triage errors`: messages the pipeline could not handle (quarantined), and `errors retry`."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from triage.cli.common import CONFIG, DB, open_store, print_table
from triage.config import load_config
from triage.errors import TriageError


@click.group(invoke_without_command=True)
@CONFIG
@DB
@click.pass_context
def errors(ctx, config_path, db_path) -> None:
    """Messages the pipeline could not handle (quarantined), with their reason.

    Example:

    \b
        triage errors
    """
    if ctx.invoked_subcommand is not None:
        return
    from triage.engine import quarantine

    store = open_store(load_config(config_path), db_path)
    try:
        rows = quarantine.listing(store)
    finally:
        store.close()
    print_table(
        "Quarantined messages",
        ("id", "reason", "received", "source", "detail"),
        ((str(q.id), q.reason, q.received_at or "", q.source[-50:], q.detail[:70]) for q in rows),
    )


@errors.command("retry")
@CONFIG
@DB
@click.argument("message_id", type=int)
def errors_retry(config_path, db_path, message_id) -> None:
    """Run one quarantined message again with today's rules.

    Example:

    \b
        triage errors retry 42
    """
    from triage.core.pipeline import Action, Rules
    from triage.engine import quarantine
    from triage.store import contacts as contacts_store

    config = load_config(config_path)
    store = open_store(config, db_path)
    try:
        rules = Rules.load(config, contacts_store.load(store))
        d = quarantine.retry(store, rules, message_id, datetime.now(UTC))
    finally:
        store.close()
    if d.action == Action.QUARANTINED:
        raise TriageError(
            f"message {message_id}",
            f"still quarantined: {d.reasons[0] if d.reasons else d.reason}",
            "correct the rule or the cause named, then `triage errors retry` again",
        )
    click.echo(
        f"message {message_id}: {d.action}"
        + (f" {d.ticket}" if d.ticket else "")
        + (f" ({d.reason})" if d.reason else "")
    )


def register(cli: click.Group) -> None:
    cli.add_command(errors)
