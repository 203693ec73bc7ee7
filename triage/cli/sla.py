"""SLA tracking commands (respond, check, report); attached to the `triage` group.

Thin: parse options, open the store, call triage.tracking, print.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from triage.cli.common import CONFIG, DB, config_or_fail, instant, open_store
from triage.service import monitoring


def _open(config_path: Path | None, db_path: Path | None):
    """(config, store, path) of an existing database; never creates one."""
    config = config_or_fail(config_path)
    return config, open_store(config, db_path), db_path or config.db


def _policies(config):
    from triage.core import sla

    try:
        return sla.load_policies(config.sla_dir)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


# --------------------------------------------------------------------------- ticket respond


@click.group("ticket")
def ticket() -> None:
    """One ticket: record what happened to it."""


@click.command("respond")
@CONFIG
@DB
@click.option("--at", "at_text", help="When the first answer went out, ISO 8601 (default: now).")
@click.argument("number")
def ticket_respond(config_path, db_path, at_text, number) -> None:
    """Record the first response on ticket NUMBER (T-000123 or 123).

    Sets first_response_at and writes a `first_response` event. A ticket
    already answered keeps its first response; saying so is not an error.

    Example:

    \b
        triage ticket respond T-000123 --at 2026-03-10T10:15:00Z
    """
    from triage.service import tracking

    at = instant(at_text, "--at")
    config, store, path = _open(config_path, db_path)
    try:
        wanted = tracking.ticket_number_from(number, config.ticket_prefix)
        done = tracking.respond(store, wanted, at)
    except tracking.UnknownTicket as exc:
        raise click.ClickException(
            f"{path}: no ticket {exc.number}; fix: `triage tickets --db {path}` lists the tickets"
        ) from None
    except tracking.TrackingError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    if done.already:
        click.echo(
            f"{done.number} was already answered at {tracking.iso(done.at)}; nothing changed"
        )
        return
    if done.due is None:
        verdict = "no target"
    else:
        verdict = "within target" if done.within else "late"
        verdict += f" (due {tracking.iso(done.due)})"
    click.echo(f"{done.number}: first response recorded at {tracking.iso(done.at)}, {verdict}")


# --------------------------------------------------------------------------- sla check


@click.command("check", cls=monitoring.Command)
@CONFIG
@DB
@click.option("--now", "now_text", help="The instant to check at, ISO 8601 (default: now).")
def sla_check(config_path, db_path, now_text) -> None:
    """Write sla_warning (75 % of open time used) and sla_breached events, once per ticket.

    Meant for a systemd timer; the daemon runs the same check. Running it
    again writes nothing new. A --now later than the clock is a preview: it
    prints what would be written and writes nothing (a breach is permanent).
    Exits 0 ok, 1 a ticket at risk, 2 a ticket breached, 3 cannot tell.

    Example:

    \b
        triage sla check --db /var/lib/triage/triage.db --now 2026-03-10T10:30:00Z
    """
    from triage.service import tracking

    now = instant(now_text, "--now")
    clock = datetime.now(UTC)
    preview = now > clock
    config, store, _path = _open(config_path, db_path)
    try:
        policies = _policies(config)
        if preview:
            result = tracking.preview(store, policies, now)
        else:
            result = tracking.check(store, policies, now)
        verdict = monitoring.sla_verdict(
            len(tracking.at_risk(store, policies, now)),
            len(tracking.breached(store, now)),
            len(result.problems),
        )
    finally:
        store.close()
    done = "would be written" if preview else "written"
    head = f"{tracking.iso(now)}: "
    if preview:
        head += f"preview (--now is later than the clock, {tracking.iso(clock)}): "
    click.echo(
        f"{head}{len(result.warned)} sla_warning {done}{_numbers(result.warned)}, "
        f"{len(result.breached)} sla_breached {done}{_numbers(result.breached)}"
        + ("; nothing written" if preview else "")
    )
    for problem in result.problems:
        click.echo(
            f"progress unknown, no warning for {problem}; fix: restore the policy file or label",
            err=True,
        )
    click.echo(verdict.line())
    sys.exit(verdict.code)


def _numbers(numbers: tuple[str, ...]) -> str:
    return f" ({', '.join(numbers)})" if numbers else ""


# --------------------------------------------------------------------------- report


@click.command("report")
@CONFIG
@DB
@click.option(
    "--since", "since_text", help="Only tickets created at or after this ISO 8601 instant."
)
@click.option(
    "--now", "now_text", help="The instant breaches are judged at, ISO 8601 (default: now)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def report(config_path, db_path, since_text, now_text, as_json) -> None:
    """First-response figures per priority: answered within target, late, breached.

    "% in target" is within / (within + late + open breached): tickets still
    open and not yet due are left out until they are decided; tickets with no
    deadline are counted apart under "no target".

    Example:

    \b
        triage report --since 2026-03-01T00:00:00Z --json
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from triage.service import tracking

    since = instant(since_text, "--since") if since_text else None
    now = instant(now_text, "--now")
    _config_, store, path = _open(config_path, db_path)
    try:
        result = tracking.report(store, now, since)
    finally:
        store.close()
    if as_json:
        sys.stdout.write(json.dumps(result.as_json(), ensure_ascii=False) + "\n")
        return
    scope = f" since {tracking.iso(since)}" if since else ""
    table = Table(title=f"First responses in {path}{scope}, at {tracking.iso(now)}")
    for col in ("priority", "tickets", "in target", "late", "breached", "open", "no target", "%"):
        table.add_column(col, justify="left" if col == "priority" else "right")
    for r in [*result.rows, result.total]:
        table.add_row(
            escape(r.priority),
            str(r.tickets),
            str(r.within),
            str(r.late),
            str(r.breached),
            str(r.pending),
            str(r.no_target),
            "-" if r.percent is None else f"{r.percent:.1f}",
        )
    Console().print(table)
    t = result.total
    if t.percent is None:
        click.echo("within target: no ticket with a target has an outcome yet")
    else:
        click.echo(f"within target: {t.percent:.1f} % ({t.within} of {t.decided})")


# --------------------------------------------------------------------------- wiring


def register(cli: click.Group) -> None:
    """Attach this module's commands to `cli`."""
    group = cli.commands.get("ticket")
    if not isinstance(group, click.Group):
        group = ticket
        cli.add_command(group)
    group.add_command(ticket_respond)
    sla_group = cli.commands["sla"]
    assert isinstance(sla_group, click.Group)
    sla_group.add_command(sla_check)
    cli.add_command(report)
