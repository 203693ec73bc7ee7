"""SLA tracking commands (respond, check, report); attached to the `triage` group."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Attach this module's commands to `cli`."""
