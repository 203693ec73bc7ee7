"""`triage outbox`: what waits to be sent or failed, acknowledgements and sink deliveries;
`outbox retry` / `drop` on either; `outbox send --once` drains both."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from triage.cli.common import CONFIG, DB, open_store, print_table
from triage.config import load_config
from triage.errors import ConfigError, TriageError

ROW_HELP = "An outbox row's id as `triage outbox` lists it: 7 (acknowledgement) or d7 (delivery)."


@click.group(invoke_without_command=True)
@CONFIG
@DB
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row.")
@click.pass_context
def outbox(ctx, config_path, db_path, as_json) -> None:
    """Acknowledgements, alerts and sink deliveries waiting to be sent, or failed, with the
    receiver's answer; deliveries are listed per sink.

    Example:

    \b
        triage outbox
    """
    if ctx.invoked_subcommand is not None:
        return
    from triage.store import deliveries, listings

    store = open_store(load_config(config_path), db_path)
    try:
        rows = listings.outbox_waiting(store)
        queued = deliveries.waiting(store)
    finally:
        store.close()
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        for row in queued:
            click.echo(json.dumps({**row, "id": f"d{row['id']}"}))
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
    if queued:
        print_table(
            "Sink deliveries",
            ("id", "sink", "event", "ticket", "status", "attempts", "next try", "last answer"),
            (
                [
                    f"d{r['id']}",
                    r["sink"],
                    r["event"],
                    r["ticket"] or "",
                    r["status"],
                    str(r["attempts"]),
                    (r["next_attempt_at"] or "")[:19] if r["status"] == "pending" else "",
                    (r["last_error"] or "")[:60],
                ]
                for r in queued
            ),
        )


def _row(text: str) -> tuple[str, int]:
    """("outbox" | "delivery", id) from `7` or `d7`."""
    table, digits = ("delivery", text[1:]) if text[:1].lower() == "d" else ("outbox", text)
    if not digits.isdigit():
        raise TriageError(
            f"outbox row {text!r}", "is not a row id", "give an id as `triage outbox` lists it"
        )
    return table, int(digits)


@outbox.command("retry")
@CONFIG
@DB
@click.argument("row_id", metavar="ROW")
def outbox_retry(config_path, db_path, row_id) -> None:
    """Queue a failed acknowledgement or a dead delivery again (after fixing the cause).

    ROW is the id `triage outbox` lists: 7 for an acknowledgement, d7 for a delivery.

    Example:

    \b
        triage outbox retry d7
    """
    from triage.store import deliveries
    from triage.store import outbox as outbox_rows

    done, table = _on_row(
        config_path,
        db_path,
        row_id,
        lambda store, n: deliveries.retry(store, n, datetime.now(UTC)),
        outbox_rows.retry,
    )
    if not done:
        what = "a dead delivery" if table == "delivery" else "a failed row"
        raise TriageError(f"outbox row {row_id}", f"is not {what}", "`triage outbox` lists them")
    click.echo(f"outbox row {row_id} queued again")


def _on_row(config_path, db_path, row_id: str, on_delivery, on_ack) -> tuple[bool, str]:
    """Apply the delivery's or the acknowledgement's action to the row ROW names."""

    table, number = _row(row_id)
    store = open_store(load_config(config_path), db_path)
    try:
        action = on_delivery if table == "delivery" else on_ack
        return bool(action(store, number)), table
    finally:
        store.close()


@outbox.command("drop")
@CONFIG
@DB
@click.argument("row_id", metavar="ROW")
def outbox_drop(config_path, db_path, row_id) -> None:
    """Never send a waiting or failed row; it stays in the database, marked dropped.

    ROW is the id `triage outbox` lists: 7 for an acknowledgement, d7 for a delivery.

    Example:

    \b
        triage outbox drop d7
    """
    from triage.store import deliveries
    from triage.store import outbox as outbox_rows

    done, _table = _on_row(config_path, db_path, row_id, deliveries.drop, outbox_rows.drop)
    if not done:
        raise TriageError(
            f"outbox row {row_id}", "is not waiting or failed", "`triage outbox` lists them"
        )
    click.echo(f"outbox row {row_id} dropped")


@outbox.command("send")
@CONFIG
@DB
@click.option("--once", is_flag=True, help="Send every row that is due, then exit.")
def outbox_send(config_path, db_path, once) -> None:
    """Send what the outbox holds that is due (acknowledgements over [smtp], deliveries to
    every [[sink]]), then exit; safe beside a running daemon.

    Each row is claimed before it is sent, so this command and the daemon (or two of
    these) never send one row twice. Prints how many rows were sent, deferred and failed;
    exits 1 when the relay itself fails (login, TLS, connection): the rows stay queued.

    Example:

    \b
        triage outbox send --once --config /etc/triage/triage.toml
    """
    import asyncio

    from triage.sinks import outbox as outbox_mod
    from triage.sinks.drainer import Drainer

    if not once:
        raise click.UsageError(
            "give --once (send what is due, then exit); `triage run` sends continuously"
        )
    config = load_config(config_path)
    sending = config.smtp is not None or config.graph_sending is not None
    if not sending and not config.sinks:
        raise ConfigError(
            config.path,
            "smtp",
            "is missing, so there is no relay to send through (and there is no [[sink]])",
            'add an [smtp] table (host = "smtp.example.com", port, tls, username and'
            " a password source), as in systemd/triage.toml.example",
        )
    store = open_store(config, db_path)
    limit = 100

    async def acknowledgements() -> list:
        sender = outbox_mod.sender_for(config)
        rounds = [await outbox_mod.drain(store, sender, limit=limit)]
        while sum((rounds[-1].sent, rounds[-1].deferred, rounds[-1].failed)) == limit:
            rounds.append(await outbox_mod.drain(store, sender, limit=limit))
        return rounds

    async def sinks():
        drainer = Drainer(store, config)
        try:
            return await drainer.drain()
        finally:
            await drainer.aclose()

    try:
        rounds = asyncio.run(acknowledgements()) if sending else []
        delivered = asyncio.run(sinks()) if config.sinks else None
    finally:
        store.close()
    if rounds:
        sent, deferred, failed = (
            sum(getattr(r, f) for r in rounds) for f in ("sent", "deferred", "failed")
        )
        click.echo(f"{sent} sent, {deferred} deferred, {failed} failed")
    if delivered is not None:
        click.echo(
            f"deliveries: {delivered.sent} sent, {delivered.retried} to retry,"
            f" {delivered.dead} dead"
            + "".join(f"; {sink} {n}" for sink, n in sorted(delivered.by_sink.items()))
        )
    if rounds and rounds[-1].relay_error:
        fix = (
            "tenant_id, client_id, the credential, user and the app's Mail.Send permission"
            if config.graph_sending is not None
            else "host, port, tls, username, password source"
        )
        raise TriageError(
            outbox_mod.sender_for(config).where,
            f"the relay is failing, so the rest stays queued: {rounds[-1].relay_error}",
            f"check [smtp] in {config.path} ({fix}), then run this again",
        )


def register(cli: click.Group) -> None:
    cli.add_command(outbox)
