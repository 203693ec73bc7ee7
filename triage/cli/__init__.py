"""The `triage` command line: the group, its shared options, and one module per command
group (replay, explain, tickets, check, contacts, sla, ticket, daemon, quarantine, outbox, review,
filtered, web, metrics, backup, prune), each thin: parse options, call, print."""

from __future__ import annotations

import importlib

import click

from triage import log
from triage.cli.common import Group, guard

COMMAND_MODULES = (
    "replay",
    "explain",
    "tickets",
    "check",
    "contacts",
    "sla",
    "ticket",
    "daemon",
    "quarantine",
    "outbox",
    "review",
    "filtered",
    "web",
    "metrics",
    "backup",
    "prune",
)


@click.group(cls=Group)
@click.version_option(package_name="triage", prog_name="triage", message="%(prog)s %(version)s")
@click.option(
    "--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"])
)
def cli(log_level: str) -> None:
    """triage: turn a support mailbox into tickets, and never answer a robot."""
    log.setup(log_level)


def _register() -> None:
    """Attach every command module's commands, then guard them all (triage.cli.common).

    Imported by name: `triage.cli.sla` and `triage.cli.review` are modules here, while
    the commands they attach are click groups of the same names.
    """
    for name in COMMAND_MODULES:
        importlib.import_module(f"triage.cli.{name}").register(cli)
    guard(cli)


_register()


def main() -> None:
    cli(prog_name="triage")


if __name__ == "__main__":
    main()
