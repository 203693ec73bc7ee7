"""Daemon commands (run, status, errors); attached to the `triage` group."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from triage.cli.common import CONFIG, DB, config_or_fail, instant, open_store
from triage.config import ConfigError
from triage.service import monitoring


def _print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A listing as a rich table on stdout. Cells are shown as literal text: values come from
    mail (sources, addresses, server answers), so rich markup in them is escaped."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    Console().print(table)


@click.command()
@CONFIG
def run(config_path) -> None:
    """Watch the configured mailboxes and turn their mail into tickets (the daemon).

    Refuses to start on a broken configuration or rule file, and beside another
    `triage run` on the same database (it names that one's pid, host and start).
    SIGTERM finishes the message in hand and exits; SIGHUP reloads rules and contacts.

    Example:

    \b
        triage run --config /etc/triage/triage.toml
    """
    from triage import log
    from triage.config import load_config, preflight
    from triage.service import daemon
    from triage.store import lock as daemon_lock

    try:
        # What `triage check` would refuse is logged, not refused: a mailbox whose
        # password cannot be read fails loudly on its own and the others keep running.
        for finding in preflight.check(load_config(config_path)):
            log.get(component="daemon").warning(
                "config_problem", problem=str(finding), severity=finding.level
            )
        code = daemon.run(config_path)
    except (ConfigError, ValueError, daemon_lock.LockError) as exc:
        raise click.ClickException(f"not starting: {exc}") from None
    sys.exit(code)


@click.command(cls=monitoring.Command)
@CONFIG
@DB
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.option(
    "--now", "now_text", help="The instant at-risk and breached are judged at (default: now)."
)
def status(config_path, db_path, as_json, now_text) -> None:
    """Mailbox and relay health, backlog, outbox depth, tickets at risk and mail held for review.

    Works while the daemon runs: it reads what the daemon last recorded. Exits
    0 ok, 1 warning (a ticket at risk, an outbox row failed, a reload rejected),
    2 critical (a mailbox failing, a ticket breached), 3 cannot tell.

    Example:

    \b
        triage status
    """
    from triage.core import sla as sla_mod
    from triage.engine import review
    from triage.service import tracking
    from triage.sinks import outbox as outbox_mod
    from triage.store import mailboxes as mailbox_state
    from triage.store import reloads

    now = instant(now_text, "--now")
    config = config_or_fail(config_path)
    store = open_store(config, db_path)
    mailbox_state.ensure(store)
    boxes = mailbox_state.rows(store)
    outbox = dict(
        store.conn.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall()
    )
    relay = outbox_mod.relay_health(store)
    at_risk = tracking.at_risk(store, sla_mod.load_policies(config.sla_dir), now)
    breached = tracking.breached(store, now)
    held = review.count(store)
    rejected = reloads.rejected(store)
    store.close()
    verdict = monitoring.status_verdict(
        boxes,
        outbox,
        len(at_risk),
        len(breached),
        rejected.error if rejected else None,
        relay=relay,
        review=held,
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "mailboxes": boxes,
                    "relay": relay,
                    "outbox": outbox,
                    "at_risk": at_risk,
                    "breached": breached,
                    "review": held,
                    "reload_rejected": rejected.as_json() if rejected else None,
                    "verdict": verdict.as_json(),
                }
            )
        )
        sys.exit(verdict.code)
    table = Table(title="Mailboxes")
    for col in ("mailbox", "state", "last message", "backlog", "failures", "last error"):
        table.add_column(col)
    for b in boxes:
        state = "FAILING" if b.get("failing") else (b.get("state") or "")
        table.add_row(
            *(
                escape(str(x or ""))
                for x in (
                    b["mailbox"],
                    state,
                    b.get("last_message_at"),
                    b.get("backlog"),
                    b.get("failures"),
                    (b.get("last_error") or "")[:60],
                )
            )
        )
    out = Console()
    out.print(table)
    if relay and relay["failing"]:
        out.print(
            f"relay: FAILING since {relay['failing_since']} ({relay['failures']} rounds):"
            f" {escape(relay['last_error'] or '')}"
        )
    elif relay:
        out.print(f"relay: ok, last reached {relay['last_ok_at']}")
    pending = outbox.get("pending", 0) + outbox.get("sending", 0)
    out.print(f"outbox: {pending} pending, {outbox.get('failed', 0)} failed")
    out.print(f"tickets at risk: {len(at_risk)}; breached: {len(breached)}")
    out.print(f"held for review: {held}" + (" (triage review)" if held else ""))
    if rejected:
        out.print(
            f"reload rejected at {rejected.at}, running on the rules loaded before: "
            f"{rejected.error}",
            markup=False,
            highlight=False,
        )
    out.print(verdict.line(), markup=False, highlight=False)
    sys.exit(verdict.code)


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

    config = config_or_fail(config_path)
    store = open_store(config, db_path)
    rows = quarantine.listing(store)
    store.close()
    _print_table(
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

    config = config_or_fail(config_path)
    store = open_store(config, db_path)
    try:
        rules = Rules.load(config, contacts_store.load(store))
        d = quarantine.retry(store, rules, message_id, datetime.now(UTC))
    except (quarantine.RetryError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    if d.action == Action.QUARANTINED:
        raise click.ClickException(
            f"message {message_id} is still quarantined: {d.reasons[0] if d.reasons else d.reason}"
        )
    click.echo(
        f"message {message_id}: {d.action}"
        + (f" {d.ticket}" if d.ticket else "")
        + (f" ({d.reason})" if d.reason else "")
    )


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

    config = config_or_fail(config_path)
    store = open_store(config, db_path)
    outbox_mod.ensure(store)
    rows = list(
        store.db.query(
            "SELECT o.id, t.number AS ticket, o.to_addr, o.subject, o.status, o.attempts, o.last_error,"
            " o.created_at, o.next_attempt_at FROM outbox o LEFT JOIN tickets t ON t.id = o.ticket_id"
            " WHERE o.status IN ('pending', 'sending', 'failed', 'bounced') ORDER BY o.id"
        )
    )
    store.close()
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    _print_table(
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

    config = config_or_fail(config_path)
    store = open_store(config, db_path)
    outbox_mod.ensure(store)
    done = outbox_mod.retry(store, row_id)
    store.close()
    if not done:
        raise click.ClickException(
            f"no failed outbox row {row_id}; fix: `triage outbox` lists them"
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
    config = config_or_fail(config_path)
    if config.smtp is None:
        raise click.ClickException(
            f"{config.path}: [smtp] is missing, so there is no relay to send through;"
            ' fix: add an [smtp] table (host = "smtp.example.com", port, tls, username and'
            " a password source), as in systemd/triage.toml.example"
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
        raise click.ClickException(
            f"the relay {config.smtp.host}:{config.smtp.port} is failing, so the rest stays"
            f" queued: {rounds[-1].relay_error}; fix: check [smtp] in {config.path} (host,"
            " port, tls, username, password source), then run this again"
        )


def register(cli: click.Group) -> None:
    for command in (run, status, errors, outbox):
        cli.add_command(command)
