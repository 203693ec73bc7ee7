"""`triage outbox`: what waits to be sent or failed; `outbox retry` and `outbox send --once`."""

from __future__ import annotations

import json

import click

from triage.cli.common import CONFIG, DB, open_store, print_table
from triage.config import load_config
from triage.errors import ConfigError, TriageError


@click.group(invoke_without_command=True)
@CONFIG
@DB
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row.")
@click.pass_context
def outbox(ctx, config_path, db_path, as_json) -> None:
    """Acknowledgements and alerts waiting to be sent, or failed, with the server's answer.

    Example:

    \b
        triage outbox
    """
    if ctx.invoked_subcommand is not None:
        return
    from triage.sinks import outbox as outbox_mod
    from triage.store import listings

    store = open_store(load_config(config_path), db_path)
    try:
        outbox_mod.ensure(store)
        rows = listings.outbox_waiting(store)
    finally:
        store.close()
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    print_table(
        "Outbox",
        ("id", "ticket", "to", "status", "attempts", "last error"),
        (
            [
                str(x or "")
                for x in (
                    r["id"],
                    r["ticket"],
                    r["to_addr"],
                    r["status"],
                    r["attempts"],
                    (r["last_error"] or "")[:70],
                )
            ]
            for r in rows
        ),
    )


@outbox.command("retry")
@CONFIG
@DB
@click.argument("row_id", type=int)
def outbox_retry(config_path, db_path, row_id) -> None:
    """Queue a failed row again (after fixing the address or the relay).

    Example:

    \b
        triage outbox retry 7
    """
    from triage.sinks import outbox as outbox_mod

    store = open_store(load_config(config_path), db_path)
    try:
        outbox_mod.ensure(store)
        done = outbox_mod.retry(store, row_id)
    finally:
        store.close()
    if not done:
        raise TriageError(
            f"outbox row {row_id}", "is not a failed row", "`triage outbox` lists them"
        )
    click.echo(f"outbox row {row_id} queued again")


@outbox.command("send")
@CONFIG
@DB
@click.option("--once", is_flag=True, help="Send every row that is due, then exit.")
def outbox_send(config_path, db_path, once) -> None:
    """Send what the outbox holds that is due, then exit; safe beside a running daemon.

    Each row is claimed before it is sent, so this command and the daemon (or two of
    these) never send one row twice. Prints how many rows were sent, deferred and failed;
    exits 1 when the relay itself fails (login, TLS, connection): the rows stay queued.

    Example:

    \b
        triage outbox send --once --config /etc/triage/triage.toml
    """
    import asyncio

    from triage.sinks import outbox as outbox_mod

    if not once:
        raise click.UsageError(
            "give --once (send what is due, then exit); `triage run` sends continuously"
        )
    config = load_config(config_path)
    if config.smtp is None:
        raise ConfigError(
            config.path,
            "smtp",
            "is missing, so there is no relay to send through",
            'add an [smtp] table (host = "smtp.example.com", port, tls, username and'
            " a password source), as in systemd/triage.toml.example",
        )
    store = open_store(config, db_path)
    outbox_mod.ensure(store)
    sender = outbox_mod.Sender(config.smtp, config.support_address)
    limit = 100

    async def until_done() -> list:
        rounds = [await outbox_mod.drain(store, sender, limit=limit)]
        while sum((rounds[-1].sent, rounds[-1].deferred, rounds[-1].failed)) == limit:
            rounds.append(await outbox_mod.drain(store, sender, limit=limit))
        return rounds

    try:
        rounds = asyncio.run(until_done())
    finally:
        store.close()
    sent, deferred, failed = (
        sum(getattr(r, f) for r in rounds) for f in ("sent", "deferred", "failed")
    )
    click.echo(f"{sent} sent, {deferred} deferred, {failed} failed")
    if rounds[-1].relay_error:
        raise TriageError(
            f"{config.smtp.host}:{config.smtp.port}",
            f"the relay is failing, so the rest stays queued: {rounds[-1].relay_error}",
            f"check [smtp] in {config.path} (host, port, tls, username, password source),"
            " then run this again",
        )


def register(cli: click.Group) -> None:
    cli.add_command(outbox)
