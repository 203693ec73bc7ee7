"""The daemon's commands: `run` (watch the mailboxes) and `status` (its health, read from
what it last recorded)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.markup import escape

from triage.cli.common import CONFIG, DB, FAILING, instant, open_store, print_table
from triage.config import load_config
from triage.service import monitoring


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
    from triage.config import preflight
    from triage.service import daemon

    click.get_current_context().meta[FAILING] = "not starting: "
    # What `triage check` would refuse is logged, not refused: a mailbox whose
    # password cannot be read fails loudly on its own and the others keep running.
    for finding in preflight.check(load_config(config_path)):
        log.get(component="daemon").warning(
            "config_problem", problem=str(finding), severity=finding.level
        )
    sys.exit(daemon.run(config_path))


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
    from triage.core import leases as lease_names
    from triage.core import sla as sla_mod
    from triage.engine import review
    from triage.service import tracking
    from triage.sinks import outbox as outbox_mod
    from triage.store import leases, listings, reloads
    from triage.store import mailboxes as mailbox_state

    now = instant(now_text, "--now")
    config = load_config(config_path)
    store = open_store(config, db_path)
    try:
        boxes = mailbox_state.rows(store)
        # which daemon works each mailbox (several share a PostgreSQL store; none on SQLite)
        owners = leases.holders(store, datetime.now(UTC))
        for box in boxes:
            box["held_by"] = owners.get(lease_names.mailbox(box["mailbox"]))
        outbox = listings.outbox_counts(store)
        relay = outbox_mod.relay_health(store)
        at_risk = tracking.at_risk(store, sla_mod.load_policies(config.sla_dir), now)
        breached = tracking.breached(store, now)
        held = review.count(store)
        rejected = reloads.rejected(store)
    finally:
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
    shared = any(b["held_by"] for b in boxes)  # several daemons: say which works each
    print_table(
        "Mailboxes",
        ("mailbox", "state", "last message", "backlog", "failures", "last error")
        + (("held by",) if shared else ()),
        (
            [
                str(x or "")
                for x in (
                    b["mailbox"],
                    "FAILING" if b.get("failing") else (b.get("state") or ""),
                    b.get("last_message_at"),
                    b.get("backlog"),
                    b.get("failures"),
                    (b.get("last_error") or "")[:60],
                    *((b["held_by"],) if shared else ()),
                )
            ]
            for b in boxes
        ),
    )
    out = Console()
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


def register(cli: click.Group) -> None:
    for command in (run, status):
        cli.add_command(command)
