"""`triage review`: mail kept out of the ticket queue for a person to look at."""

from __future__ import annotations

import json

import click

from triage import instants
from triage.cli.common import CONFIG, DB, instant, open_store
from triage.config import load_config
from triage.errors import ConfigError


@click.group(invoke_without_command=True)
@CONFIG
@DB
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message.")
@click.pass_context
def review(ctx, config_path, db_path, as_json) -> None:
    """Mail held for review: only weak filter rules fired on mail that shows a person.

    Nothing was answered and no ticket was opened. Each row shows the rule and the
    signs of a person and of a machine; `triage review release ID` makes the ticket.

    Example:

    \b
        triage review --db triage.db
    """
    if ctx.invoked_subcommand is not None:
        return
    from triage.engine import review as review_mod

    store = open_store(load_config(config_path), db_path)
    try:
        held = review_mod.listing(store)
    finally:
        store.close()
    if as_json:
        for h in held:
            click.echo(json.dumps(h.as_json(), ensure_ascii=False))
        return
    lines = [f"{len(held)} message(s) held for review"]
    if held:
        lines.append("")
    for h in held:
        lines += review_mod.describe(h)
    click.echo("\n".join(lines).rstrip("\n"))


@review.command("release")
@CONFIG
@DB
@click.option("--now", "now_text", help="The instant of the release (ISO 8601; default: now).")
@click.argument("key")
def review_release(config_path, db_path, now_text, key) -> None:
    """Release one held message into a ticket, acknowledgement queued, as on its arrival.

    KEY is the id `triage review` lists, or the message key. The deadline runs
    from when the message arrived.

    Example:

    \b
        triage review release 38 --db triage.db
    """
    from triage.core.pipeline import Rules
    from triage.engine import review as review_mod
    from triage.store import contacts as contacts_store

    config = load_config(config_path)
    store = open_store(config, db_path)
    try:
        rules = Rules.load(config, contacts_store.load(store))
        d = review_mod.release(store, rules, key, instant(now_text))
    finally:
        store.close()
    due = instants.iso(d.due) if d.due else "none"
    click.echo(
        f"released {key}: {d.action} {d.ticket} (priority {d.priority}, due {due});"
        f" acknowledgement {'queued' if d.auto_reply else 'not sent: ' + str(d.reply_suppressed)}"
    )


@review.command("digest")
@CONFIG
@DB
@click.option(
    "--send",
    is_flag=True,
    help="Queue it in the outbox for [daemon] operator now, whenever the last one went.",
)
@click.option("--now", "now_text", help="The digest's date (ISO 8601; default: now).")
def review_digest(config_path, db_path, send, now_text) -> None:
    """Print the operator's digest of held mail; with --send, queue it to [daemon] operator.

    The daemon queues it by itself once a day while mail waits for review.

    Example:

    \b
        triage review digest --db triage.db
    """
    from triage.engine import review as review_mod

    config = load_config(config_path)
    now = instant(now_text)
    if send and not config.daemon.operator:
        raise ConfigError(
            config.path,
            "daemon.operator",
            "is not set, so there is nobody to send the digest to",
            'add operator = "ops@example.com" under [daemon]',
        )
    store = open_store(config, db_path)
    try:
        found = (
            review_mod.queue_digest(store, config, now, force=True)
            if send
            else review_mod.digest(store, config, now)
        )
    finally:
        store.close()
    if found is None:
        click.echo("nothing waits for review")
        return
    click.echo(f"Subject: {found.subject}\n")
    click.echo(found.text, nl=False)
    if send:
        click.echo(f"\nqueued for {found.to} (outbox; the daemon or `triage outbox` shows it)")


def register(cli: click.Group) -> None:
    cli.add_command(review)
