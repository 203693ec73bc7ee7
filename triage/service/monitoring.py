"""Exit codes for monitoring: 0 ok, 1 warning, 2 critical, 3 unknown (the plugin convention).

`triage status` and `triage sla check` end with one of these, so Nagios, Icinga,
Checkmk or a shell script can alert on them without reading the text. The
verdicts are pure: facts in, (code, reasons) out.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import click

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}


@dataclass(frozen=True, slots=True)
class Verdict:
    code: int
    reasons: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return NAMES[self.code]

    def line(self) -> str:
        """`CRITICAL: mailbox support failing; 1 ticket breached`, or `OK`."""
        return f"{self.name}: {'; '.join(self.reasons)}" if self.reasons else self.name

    def as_json(self) -> dict:
        return {"code": self.code, "state": self.name.lower(), "reasons": list(self.reasons)}


def _verdict(critical: list[str], warning: list[str]) -> Verdict:
    if critical:
        return Verdict(CRITICAL, tuple(critical + warning))
    if warning:
        return Verdict(WARNING, tuple(warning))
    return Verdict(OK)


def _tickets(n: int, what: str) -> str:
    return f"{n} ticket{'s' if n != 1 else ''} {what}"


def sla_verdict(at_risk: int, breached: int, problems: int = 0) -> Verdict:
    """Critical while a ticket is breached; warning while one is at risk or unreadable."""
    critical = [_tickets(breached, "breached")] if breached else []
    warning = [_tickets(at_risk, "at risk")] if at_risk else []
    if problems:
        warning.append(f"{problems} ticket(s) with unknown progress")
    return _verdict(critical, warning)


def status_verdict(
    mailboxes: Iterable[Mapping],
    outbox: Mapping[str, int],
    at_risk: int,
    breached: int,
    reload_rejected: str | None = None,
    relay: Mapping | None = None,
    review: int = 0,
) -> Verdict:
    """Critical: a mailbox or the SMTP relay failing, or a ticket breached. Warning: a ticket
    at risk, an outbox row failed, mail held for review (a person's mail that waits for a
    person), or the last reload was rejected (the daemon runs on older rules)."""
    critical = [f"mailbox {m['mailbox']} failing" for m in mailboxes if m.get("failing")]
    if relay and relay.get("failing"):
        critical.append(f"relay failing ({relay.get('kind') or '?'})")
    if breached:
        critical.append(_tickets(breached, "breached"))
    warning = [_tickets(at_risk, "at risk")] if at_risk else []
    failed = outbox.get("failed", 0)
    if failed:
        warning.append(f"{failed} outbox row{'s' if failed != 1 else ''} failed")
    if review:
        warning.append(f"{review} message{'s' if review != 1 else ''} held for review")
    if reload_rejected:
        warning.append(f"reload rejected: {reload_rejected}")
    return _verdict(critical, warning)


class Command(click.Command):
    """A command whose every error (bad option, no database, unreadable config) exits 3:
    a monitor must not read "cannot tell" as a warning (1) or as critical (2)."""

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except click.ClickException as exc:
            exc.exit_code = UNKNOWN
            raise

    def invoke(self, ctx: click.Context):
        from triage.cli.common import busy_error

        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            exc.exit_code = UNKNOWN
            raise
        except sqlite3.OperationalError as exc:
            friendly = busy_error(exc)
            if friendly is None:
                raise
            friendly.exit_code = UNKNOWN
            raise friendly from None
