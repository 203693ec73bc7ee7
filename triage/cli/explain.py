"""`triage explain`: the decision trace for one message, for people: an .eml file, a stored
message (`--message KEY`, from the bytes kept beside the database) or a whole ticket
(`T-000123`: each message's trace as it was decided, and what happened to it since)."""

from __future__ import annotations

import re
from pathlib import Path

import click
from rich.console import Console

from triage.cli.common import CONFIG, event_line, instant, no_database, open_store, store_at, where
from triage.config import load_config
from triage.errors import TriageError

_NUMBER = re.compile(r"#?[A-Za-z._-]{0,16}\d+")


@click.command()
@CONFIG
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read conversations from this database (nothing is written).",
)
@click.option("--now", "now_text", help="Fix the clock (ISO 8601).")
@click.option(
    "--message",
    "message_key",
    help="Explain the stored message with this key or Message-ID, from its kept bytes.",
)
@click.argument("target", required=False)
def explain(config_path, db_path, now_text, message_key, target) -> None:
    """Print the decision trace for one message (FILE.eml, or --message KEY from the
    database), or for every message of a ticket (T-000123), for people.

    Example:

    \b
        triage explain fixtures/emails/12-severity1-subject.eml
    """
    from triage.engine.loading import rules_for

    if (target is None) == (message_key is None):
        raise TriageError(
            "explain",
            "give one message: a FILE.eml, a ticket number or --message KEY",
            "e.g. `triage explain message.eml`, `triage explain T-000123` or"
            " `triage explain --message '<id@example.com>'`",
        )
    config = load_config(config_path)
    path = Path(target) if target is not None else None
    if path is not None and path.is_file():
        if db_path is not None and not db_path.is_file():
            raise no_database(db_path)
        rules = rules_for(config, db_path)
        store = store_at(db_path, config.ticket_prefix)
        _print_file(path.read_bytes(), str(path), rules, store, instant(now_text, "--now"))
        return
    if target is not None and not _NUMBER.fullmatch(target.strip()):
        raise TriageError(
            target,
            "no such file, and not a ticket number",
            "give an .eml file that exists, a ticket number (T-000123) or --message KEY",
        )
    db = where(config, db_path)  # the file, or the PostgreSQL URL (`[store] url`)
    on = _option(config, db_path)
    if message_key is not None:  # decided again: the rules are needed (a ticket's trace is stored)
        store = open_store(config, db_path)
        try:
            rules = rules_for(config, db_path)
        except BaseException:
            store.close()
            raise
        _print_stored(store, db, on, message_key, rules, now_text)
    else:
        _print_ticket(open_store(config, db_path), db, on, target, config.ticket_prefix)


def _option(config, db_path: Path | None) -> str:
    """The option a follow-up command names the same store with: --db FILE, or on
    PostgreSQL (`[store] url`) the configuration that names it."""
    if db_path is None and config.database is not None:
        return f" --config {config.path}"
    return f" --db {db_path or config.db}"


def _print_file(raw: bytes, source: str, rules, store, now) -> None:
    from triage.engine.explain import explain as decision_for

    d = decision_for(raw, source, rules, store, now)
    store.close()
    out = Console()
    out.print(f"[bold]{source}[/bold]", markup=True, highlight=False)
    if d.email:
        e = d.email
        out.print(f"  from     {e.from_display}", markup=False)
        out.print(f"  subject  {e.subject}", markup=False)
        out.print(f"  key      {e.key}", markup=False)
    out.print(f"  action   [bold]{d.action}[/bold]" + (f" ({d.reason})" if d.reason else ""))
    if d.priority:
        out.print(f"  priority {d.priority}   due {d.due.isoformat() if d.due else 'none'}")
    out.print("  why:")
    for reason in d.reasons:
        out.print(f"    - {reason}", markup=False, highlight=False)


def _print_stored(store, db: str, on: str, key: str, rules, now_text: str | None) -> None:
    """A stored message decided again from its kept bytes (at its arrival unless --now)."""
    from triage.store import lifecycle as rows
    from triage.store import messages

    m = rows.message(store, key.strip())
    if m is None:
        store.close()
        raise TriageError(
            db,
            f"no stored message with key or Message-ID {key!r}",
            f"`triage ticket show T-000123{on}` lists a ticket's messages with their keys",
        )
    raw = messages.kept_bytes(store, m["sha256"] or "")
    if raw is None:
        store.close()
        raise TriageError(
            db,
            f"the bytes of {m['message_key']} are not kept (stored before triage kept them,"
            " or filtered by a rule)",
            f"explain the .eml file itself: `triage explain FILE.eml{on}`",
        )
    click.echo(
        f"stored at {m['received_at']} as {m['action']}"
        + (f" ({m['ticket']})" if m["ticket"] else "")
        + (f" ({m['reason']})" if m["reason"] else "")
        + "; decided again from its kept bytes:"
    )
    from triage import instants

    now = instant(now_text, "--now") if now_text else instants.stored(m["received_at"])
    _print_file(raw, m["source"] or m["message_key"], rules, store, now)


def _print_ticket(store, db: str, on: str, target: str, prefix: str) -> None:
    """Each message of the ticket with the trace stored when it was decided, then its events."""
    from triage.core.sla.tracking import ticket_number_from
    from triage.store import lifecycle as rows

    try:
        number = ticket_number_from(target, prefix)
        t = rows.ticket(store, number)
        if t is None:
            raise TriageError(db, f"no ticket {number}", f"`triage tickets{on}` lists the tickets")
        traces = rows.traces(store, t["id"])
        events = rows.events(store, t["id"])
    finally:
        store.close()
    out = Console()
    out.print(f"[bold]{number}[/bold]  {t['subject'] or ''}", highlight=False)
    status = f"  status   {t['status']}   priority {t['priority'] or '-'}"
    out.print(status + f"   due {t['response_due'] or 'none'}", markup=False, highlight=False)
    if t["linked_to"]:
        out.print(f"  linked to {t['linked_to']}", markup=False, highlight=False)
    for m in traces:
        out.print(
            f"  message {m['message_key']}  {m['received_at']}  {m['from_addr']}: {m['action']}",
            markup=False,
            highlight=False,
        )
        for reason in m["reasons"]:
            out.print(f"    - {reason}", markup=False, highlight=False)
    if events:
        out.print("  events:")
    for e in events:
        out.print(f"    - {event_line(e)}", markup=False, highlight=False)
    out.print(f"  (`triage explain --message KEY{on}` decides a message again)", markup=False)


def register(cli: click.Group) -> None:
    cli.add_command(explain)
