"""`triage ticket`: one ticket whole (`show`), and what people do to it (`assign`, `note`,
`status`, `priority`, `respond`).

Thin: parse options, open the store, call triage.service.lifecycle or tracking, print.
Every change is an event with who (`--by`, default the OS user) and when (`--at`,
default now); with `--json` a change prints the ticket after it, as one object.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import click

from triage import instants
from triage.cli.common import CONFIG, DB, event_line, instant, open_store, where
from triage.config import load_config
from triage.core import lifecycle as rules
from triage.core.sla import tracking as sla_tracking
from triage.core.sla.tracking import UnknownTicket, ticket_number_from
from triage.errors import TriageError

JSON = click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
AT = click.option("--at", "at_text", help="When it happened, ISO 8601 (default: now).")
BY = click.option("--by", "by", help="Who did it (default: the OS user).")


def _by(value: str | None) -> str:
    if value:
        return value
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's uid)
        return "unknown"


T = TypeVar("T")  # what a change gives back


class _Open:
    """The config and an existing database for one command; the ticket number read."""

    def __init__(self, config_path: Path | None, db_path: Path | None, number: str) -> None:
        self.config = load_config(config_path)
        self.path = where(self.config, db_path)
        self.on_postgres = db_path is None and self.config.database is not None
        self.number = ticket_number_from(number, self.config.ticket_prefix)
        self.store = open_store(self.config, db_path)

    def unknown(self) -> TriageError:
        return TriageError(
            self.path,
            f"no ticket {self.number}",
            f"`triage tickets --db {self.path}` lists the tickets"
            if not self.on_postgres
            else "`triage tickets` lists the tickets",
        )

    def policies(self):
        from triage.core import sla as sla_mod

        return sla_mod.load_policies(self.config.sla_dir)

    def change(self, apply: Callable[[_Open], T]) -> T:
        """The ticket after `apply` changed it; an unknown ticket is named with the fix, and
        the store is closed whatever happens."""
        try:
            return apply(self)
        except UnknownTicket:
            raise self.unknown() from None
        finally:
            self.store.close()


def _out(row: dict, as_json: bool, line: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        click.echo(line)


@click.group("ticket")
def ticket() -> None:
    """One ticket: show it whole, assign it, note it, change its state or priority."""


@ticket.command("show")
@CONFIG
@DB
@JSON
@click.option("--now", "now_text", help="The instant time left is counted at (default: now).")
@click.argument("number")
def show(config_path, db_path, as_json, now_text, number) -> None:
    """Show ticket NUMBER (T-000123 or 123) whole: thread, people, priority, SLA, events.

    Example:

    \b
        triage ticket show T-000001
    """
    from triage.service import lifecycle

    now = instant(now_text, "--now")
    o = _Open(config_path, db_path, number)
    try:
        v = lifecycle.view(o.store, o.number)
    except UnknownTicket:
        raise o.unknown() from None
    finally:
        o.store.close()
    t = v.ticket
    sla = _sla(t, now)
    if as_json:
        whole = {
            **t,
            "sla": sla,
            "why": v.why,
            "thread": v.thread,
            "events": v.events,
            "attachments": v.attachments,
        }
        sys.stdout.write(json.dumps(whole, ensure_ascii=False) + "\n")
        return
    echo = click.echo
    echo(f"{t['number']}  {t['subject'] or ''}")
    echo(
        f"  status     {t['status']}"
        + (f" (clock paused {t['paused_at']})" if t["paused_at"] else "")
    )
    echo(f"  assignee   {t['assignee'] or '-'}")
    echo(f"  requester  {t['requester_name'] or ''} <{t['requester']}>".replace("  <", " <"))
    echo(f"  contact    {t['contact'] or '-'}  ({t['match'] or 'none'})")
    echo(f"  company    {t['company'] or '-'}")
    echo(f"  priority   {t['priority'] or '-'}" + (f"   queue {t['queue']}" if t["queue"] else ""))
    for line in v.why:
        echo(f"    {line}")
    echo(f"  sla        {sla['text']}")
    if t["linked_to"]:
        echo(f"  linked to  {t['linked_to']}")
    echo(f"thread ({len(v.thread)}):")
    for m in v.thread:
        echo(f"  - {m['received_at']}  {m['from_addr']}  {m['subject'] or ''}")
        echo(f"      key {m['message_key']}")
        for text in (m["excerpt"] or "").strip().splitlines()[:6]:
            echo(f"      {text}")
    echo(f"events ({len(v.events)}):")
    for e in v.events:
        echo(f"  - {event_line(e)}")
    echo(f"attachments ({len(v.attachments)}):")
    for a in v.attachments:
        echo(f"  - {a['filename'] or '(no name)'}  {a['content_type']}  {a['size']} bytes")


def _sla(t: dict, now: datetime) -> dict:
    """The response target, its deadline and how much is left (or that it was missed), read
    on the ticket's own clock as SLA tracking reads it (a paused clock stopped when it paused)."""
    tracked = sla_tracking.from_row(t)
    out: dict = {"target": t["target"], "due": t["response_due"], "policy": t["policy"]}
    out["plan"] = t["plan"]
    if tracked.due is None:
        out.update(state="no target", left_seconds=None)
        out["text"] = f"{t['target'] or 'none'}: no deadline"
    elif tracked.responded is not None:
        within = sla_tracking.within(tracked.responded, tracked.due)
        out.update(state="answered", left_seconds=None)
        out["text"] = f"{t['target']}, due {t['response_due']}: answered " + (
            f"{t['first_response_at']} (within target)"
            if within
            else f"{t['first_response_at']} (late)"
        )
    elif not rules.is_open(t["status"]):
        out.update(state="stopped", left_seconds=None)
        out["text"] = f"{t['target']}, due {t['response_due']}: never answered; {t['status']}"
    else:
        left = (tracked.due - sla_tracking.clock(tracked, now)).total_seconds()
        breached = sla_tracking.is_breached_open(tracked, now)
        state = "breached" if breached else "paused" if tracked.paused else "running"
        out.update(state=state, left_seconds=int(left))
        span = _span(abs(left))
        when = f"breached {span} ago" if breached else f"{span} left"
        out["text"] = f"{t['target']}, due {t['response_due']}: {when}" + (
            " (clock paused)" if state == "paused" else ""
        )
    return out


def _span(seconds: float) -> str:
    minutes = int(seconds // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return (f"{days}d " if days else "") + f"{hours}h{minutes:02d}m"


@ticket.command("assign")
@CONFIG
@DB
@JSON
@AT
@BY
@click.argument("number")
@click.argument("who")
def assign(config_path, db_path, as_json, at_text, by, number, who) -> None:
    """Assign ticket NUMBER to WHO (a name or address; "" to nobody).

    Example:

    \b
        triage ticket assign T-000001 alice@msp.example
    """
    from triage.service import lifecycle

    actor = lifecycle.Actor(_by(by), instant(at_text, "--at"))
    row = _Open(config_path, db_path, number).change(
        lambda o: lifecycle.assign(o.store, o.number, who.strip(), actor, o.config.sinks)
    )
    _out(row, as_json, f"{row['number']}: assigned to {row['assignee'] or 'nobody'}")


@ticket.command("note")
@CONFIG
@DB
@JSON
@AT
@BY
@click.option(
    "--file",
    "file_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the note from this file ('-': standard input) instead of TEXT.",
)
@click.argument("number")
@click.argument("text", required=False)
def note(config_path, db_path, as_json, at_text, by, file_path, number, text) -> None:
    """Add an internal note TEXT (or --file) to ticket NUMBER; never mailed to the customer
    (sinks subscribed get `ticket.noted`).

    Example:

    \b
        triage ticket note T-000001 "Called the customer, printer replaced."
    """
    from triage.service import lifecycle

    if file_path is not None and text is not None:
        raise TriageError("ticket note", "both TEXT and --file given", "give one of them")
    if file_path is not None:
        try:
            text = sys.stdin.read() if str(file_path) == "-" else file_path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TriageError(
                f"--file {file_path}", f"cannot be read: {exc}", "give a UTF-8 text file"
            ) from None
    if not (text or "").strip():
        raise TriageError(
            "ticket note", "the note is empty", "write the note as TEXT, or --file note.txt"
        )
    actor = lifecycle.Actor(_by(by), instant(at_text, "--at"))
    row = _Open(config_path, db_path, number).change(
        lambda o: lifecycle.note(o.store, o.number, text.strip(), actor, o.config.sinks)
    )
    _out(row, as_json, f"{row['number']}: note added by {actor.by}")


@ticket.command("status")
@CONFIG
@DB
@JSON
@AT
@BY
@click.argument("number")
@click.argument("state", type=click.Choice(rules.STATES))
def status(config_path, db_path, as_json, at_text, by, number, state) -> None:
    """Move ticket NUMBER to STATE: open, pending (waiting on the customer), resolved, closed.

    Pending pauses the response clock where the ticket's SLA policy says so
    (`pause_when_pending`); back to open, the deadline moves by the paused time.

    Example:

    \b
        triage ticket status T-000001 pending
    """
    from triage.service import lifecycle

    actor = lifecycle.Actor(_by(by), instant(at_text, "--at"))
    row = _Open(config_path, db_path, number).change(
        lambda o: lifecycle.set_status(
            o.store, o.policies(), o.number, state, actor, o.config.sinks
        )
    )
    due = f", due {row['response_due']}" if row["response_due"] else ""
    paused = ", response clock paused" if row["paused_at"] else ""
    _out(row, as_json, f"{row['number']}: {row['status']}{paused}{due}")


@ticket.command("priority")
@CONFIG
@DB
@JSON
@AT
@BY
@click.option("--reason", required=True, help="Why the priority changes (kept in the event).")
@click.argument("number")
@click.argument("priority")
def priority(config_path, db_path, as_json, at_text, by, reason, number, priority) -> None:
    """Set the priority of ticket NUMBER (P1..P4 or the policy's label) and recompute its
    response deadline from its policy; sinks subscribed get `ticket.priority_changed`.

    Example:

    \b
        triage ticket priority T-000001 P1 --reason "whole office down"
    """
    from triage.core.sla import SlaError
    from triage.service import lifecycle

    actor = lifecycle.Actor(_by(by), instant(at_text, "--at"))

    def apply(o: _Open) -> dict:
        try:
            return lifecycle.set_priority(
                o.store,
                o.policies(),
                o.config.policy,
                o.number,
                priority,
                reason,
                actor,
                o.config.sinks,
            )
        except SlaError as exc:
            fix = str(exc).split("fix: ", 1)[-1]
            raise TriageError(
                f"ticket priority {o.number}", f"{priority!r} is not a priority", fix
            ) from None

    row = _Open(config_path, db_path, number).change(apply)
    due = row["response_due"] or "none"
    _out(row, as_json, f"{row['number']}: priority {row['priority']}, due {due}")


@ticket.command("respond")
@CONFIG
@DB
@click.option("--at", "at_text", help="When the first answer went out, ISO 8601 (default: now).")
@click.argument("number")
def respond(config_path, db_path, at_text, number) -> None:
    """Record the first response on ticket NUMBER (T-000123 or 123).

    Sets first_response_at and writes a `first_response` event. A ticket
    already answered keeps its first response; saying so is not an error.
    An agent's reply through the watched mailbox is recorded by itself.

    Example:

    \b
        triage ticket respond T-000123 --at 2026-03-10T10:15:00Z
    """
    from triage.service import tracking

    at = instant(at_text, "--at")
    done = _Open(config_path, db_path, number).change(
        lambda o: tracking.respond(o.store, o.number, at)
    )
    if done.already:
        click.echo(
            f"{done.number} was already answered at {instants.iso(done.at)}; nothing changed"
        )
        return
    if done.due is None:
        verdict = "no target"
    else:
        verdict = "within target" if done.within else "late"
        verdict += f" (due {instants.iso(done.due)})"
    click.echo(f"{done.number}: first response recorded at {instants.iso(done.at)}, {verdict}")


def register(cli: click.Group) -> None:
    cli.add_command(ticket)
