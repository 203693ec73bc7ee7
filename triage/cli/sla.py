"""SLA commands: `sla due` (a deadline by hand), `sla check` (for a timer) and `report`
(first-response figures); `ticket respond` is in triage/cli/ticket.py.

Thin: parse options, open the store, call triage.core.sla or triage.service.tracking, print.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from triage import instants
from triage.cli.common import (
    CONFIG,
    DB,
    instant,
    no_database,
    open_store,
    print_table,
    systemic,
    where,
)
from triage.config import load_config
from triage.errors import TriageError
from triage.service import monitoring


def _open(config_path: Path | None, db_path: Path | None):
    """(config, store, path) of an existing database; never creates one."""
    config = load_config(config_path)
    return config, open_store(config, db_path), where(config, db_path)


@click.group()
def sla() -> None:
    """SLA policies: compute deadlines by hand, check for breaches."""


@sla.command("due")
@CONFIG
@click.option(
    "--policy", required=True, help="Policy name, e.g. connectwise, msp-p1-p6, controlup."
)
@click.option("--plan", default=None, help="Plan of that policy (omit for policies without plans).")
@click.option(
    "--priority", required=True, help="P<n> (rank, 1 most urgent) or the policy's own label."
)
@click.option("--at", "at_text", required=True, help="Arrival instant, ISO 8601 with offset.")
@click.option(
    "--tz", default=None, help="The customer's or provider's time zone (default from config)."
)
def sla_due(config_path, policy, plan, priority, at_text, tz) -> None:
    """Print the response deadline as ISO 8601, or `none`.

    Example:

    \b
        triage sla due --policy connectwise --plan basic --priority P2 --at 2026-03-06T16:30:00Z --tz America/New_York
    """
    from triage.core import sla as sla_mod

    config = load_config(config_path)
    policies = sla_mod.load_policies(config.sla_dir)
    if policy not in policies:
        raise TriageError(config.sla_dir, f"no policy {policy!r}", f"use one of {sorted(policies)}")
    chosen = policies[policy]
    at = instant(at_text, "--at")
    deadline = sla_mod.due(chosen, plan, chosen.rank_of(priority), at, tz or config.timezone)
    # the contract's form (`+00:00`), which scripts parse: unchanged since the first release
    click.echo(deadline.due.isoformat() if deadline.due else "none")


@sla.command("check", cls=monitoring.Command)
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
    from triage.core import sla as sla_mod
    from triage.service import tracking

    now = instant(now_text, "--now")
    clock = datetime.now(UTC)
    preview = now > clock
    config, store, _path = _open(config_path, db_path)
    try:
        policies = sla_mod.load_policies(config.sla_dir)
        if preview:
            result = tracking.preview(store, policies, now)
        else:
            result = tracking.check(store, policies, now, sinks=config.sinks)
        verdict = monitoring.sla_verdict(
            len(tracking.at_risk(store, policies, now)),
            len(tracking.breached(store, now)),
            len(result.problems),
        )
    finally:
        store.close()
    done = "would be written" if preview else "written"
    head = f"{instants.iso(now)}: "
    if preview:
        head += f"preview (--now is later than the clock, {instants.iso(clock)}): "
    click.echo(
        f"{head}{len(result.warned)} sla_warning {done}{_numbers(result.warned)}, "
        f"{len(result.breached)} sla_breached {done}{_numbers(result.breached)}"
        + ("; nothing written" if preview else "")
    )
    for problem in result.problems:
        what = problem.split("\n  fix: ", 1)[0]  # the policy's own fix is not this one
        click.echo(
            f"progress unknown, no warning for {what}\n  fix: restore the policy file or label",
            err=True,
        )
    click.echo(verdict.line())
    sys.exit(verdict.code)


def _numbers(numbers: tuple[str, ...]) -> str:
    return f" ({', '.join(numbers)})" if numbers else ""


@click.command("report")
@CONFIG
@DB
@click.option(
    "--since",
    "since_text",
    help="Only tickets created at or after this ISO 8601 instant, or this date"
    " (YYYY-MM-DD: midnight in the configured time zone).",
)
@click.option(
    "--now", "now_text", help="The instant breaches are judged at, ISO 8601 (default: now)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the report with charts to this one self-contained HTML file.",
)
def report(config_path, db_path, since_text, now_text, as_json, html_path) -> None:
    """First-response figures per priority: answered within target, late, breached.

    "% in target" is within / (within + late + open breached): tickets still
    open and not yet due are left out until they are decided; tickets with no
    deadline are counted apart under "no target". With --html, the same figures
    and charts (attainment against each policy's objective in rules/objectives.toml,
    tickets per day, breaches per company, filtered mail by reason) go to one file.

    Example:

    \b
        triage report --since 2026-03-01T00:00:00Z --json
        triage report --html report.html --since 2026-03-01
    """
    from triage.service import tracking

    config = load_config(config_path)
    since = _since(since_text, config.timezone) if since_text else None
    now = instant(now_text, "--now")
    if html_path is not None:
        _html_report(config, db_path, html_path, now, since)
    _config, store, path = _open(config_path, db_path)
    try:
        result = tracking.report(store, now, since)
    finally:
        store.close()
    if as_json:
        sys.stdout.write(json.dumps(result.as_json(), ensure_ascii=False) + "\n")
        return
    scope = f" since {instants.iso(since)}" if since else ""
    print_table(
        f"First responses in {path}{scope}, at {instants.iso(now)}",
        ("priority", "tickets", "in target", "late", "breached", "open", "no target", "%"),
        (
            (
                r.priority,
                r.tickets,
                r.within,
                r.late,
                r.breached,
                r.pending,
                r.no_target,
                "-" if r.percent is None else f"{r.percent:.1f}",
            )
            for r in [*result.rows, result.total]
        ),
        right=("tickets", "in target", "late", "breached", "open", "no target", "%"),
    )
    t = result.total
    if t.percent is None:
        click.echo("within target: no ticket with a target has an outcome yet")
    else:
        click.echo(f"within target: {t.percent:.1f} % ({t.within} of {t.decided})")


def _since(text: str, timezone: str) -> datetime:
    """--since: an ISO 8601 instant, or a date meaning its midnight in `timezone`."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        return instant(text, "--since")
    if len(text.strip()) != 10:  # 20260301 is a date to fromisoformat; write it with dashes
        return instant(text, "--since")
    return datetime.combine(day, time(0), ZoneInfo(timezone)).astimezone(UTC)


def _html_report(
    config, db_path: Path | None, target: Path, now: datetime, since: datetime | None
) -> None:
    """Write the report with charts to `target` (read-only on the store: the SQLite file, or
    the PostgreSQL database of `[store] url`)."""
    import sqlite3

    from triage.core import sla as sla_mod
    from triage.desk import objectives
    from triage.desk import report as desk_report

    db = config.database if db_path is None and config.database is not None else None
    if db is None:
        db = db_path or config.db
        if not db.is_file():
            raise no_database(db)
    if not target.parent.is_dir():
        raise TriageError(
            f"--html {target}", f"no folder {target.parent}", "give a file in an existing folder"
        )
    policies = sla_mod.load_policies(config.sla_dir)
    targets = objectives.load(config.rules_dir / objectives.FILE, known=policies)
    try:
        page = desk_report.html(db, now, since, targets, config.timezone)
    except (sqlite3.Error, *systemic(db)) as exc:
        raise TriageError(
            where(config, db_path), f"cannot be read: {exc}", "pass the daemon's database"
        ) from None
    except OSError as exc:  # the read-only connection's errors name the file and the fix
        raise TriageError(str(exc)) from None
    try:
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise TriageError(
            f"--html {target}",
            f"cannot be written: {exc.strerror or exc}",
            "give a file this user may write",
        ) from None
    click.echo(f"report with charts written to {target}", err=True)


def register(cli: click.Group) -> None:
    for command in (sla, report):
        cli.add_command(command)
