"""`triage replay`: the whole pipeline over files, folders, maildirs and mbox files."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from triage.cli.common import CONFIG, instant, postgres_store, store_at, where
from triage.config import load_config
from triage.core.pipeline import Action, Decision
from triage.errors import TriageError
from triage.store.listings import Acknowledgement


@click.command()
@CONFIG
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Database (default from config: ./triage.db).",
)
@click.option(
    "--dry-run", is_flag=True, help="Decide everything, store nothing (an in-memory database)."
)
@click.option("--now", "now_text", help="Fix the clock (ISO 8601), for repeatable deadlines.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message on stdout.")
@click.option(
    "--workers", type=int, default=None, help="Parsing processes (default: one per core)."
)
@click.option(
    "--acks-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the acknowledgements that would be sent here as .eml files.",
)
@click.option(
    "--sinks-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write what each [[sink]] would receive here, one file per delivery.",
)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def replay(
    config_path, db_path, dry_run, now_text, as_json, workers, acks_dir, sinks_dir, paths
) -> None:
    """Run the whole pipeline over .eml files, folders, maildirs or mbox files.

    Nothing is sent: acknowledgements are recorded (and written to --acks-dir), and
    the deliveries to the configured [[sink]]s are queued as the daemon would, marked
    so that nothing sends them (and written to --sinks-dir).

    Example:

    \b
        triage replay --dry-run --json --now 2026-03-06T16:30:00Z fixtures/emails
    """
    from triage.engine.loading import rules_for
    from triage.engine.replay import replay as run
    from triage.sinks import folder
    from triage.sources.files import iter_paths
    from triage.store import deliveries, listings

    if db_path and dry_run:
        raise click.UsageError("--db and --dry-run exclude each other: choose one")
    config = load_config(config_path)
    rules = rules_for(config, db_path)
    now = instant(now_text, "--now")
    if not dry_run and db_path is None and config.database is not None:
        store = postgres_store(config)
    else:
        store = store_at(None if dry_run else (db_path or config.db), config.ticket_prefix)
    store.outbox_status = "replay"
    mark = listings.outbox_mark(store)
    sink_mark = deliveries.mark(store)
    decisions: list[Decision] = []
    readable = 0

    def emit(d: Decision) -> None:
        nonlocal readable
        if d.reason != "unreadable":
            readable += 1
        if as_json:
            sys.stdout.write(json.dumps(d.as_json(), ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            decisions.append(d)

    with _Progress(enabled=not as_json) as advance:

        def tick(d: Decision) -> None:
            emit(d)
            advance()

        summary = run(iter_paths(list(paths)), rules, store, now, tick, workers=workers)
    acks = listings.acknowledgements_after(store, mark)
    queued = deliveries.after(store, sink_mark)
    store.close()
    err = Console(stderr=True)
    if not as_json:
        _print_decisions(decisions, acks)
        _print_deliveries(queued)
    if acks_dir is not None:
        written = folder.write(acks, acks_dir)
        err.print(f"wrote {written} acknowledgement(s) that would be sent to {acks_dir}/")
    if sinks_dir is not None:
        written = folder.write_deliveries(queued, config.sinks, sinks_dir)
        err.print(f"wrote {written} sink deliveries that would be sent to {sinks_dir}/")
    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary.counts.items()))
    stored = "nothing stored (dry run)" if dry_run else f"stored in {where(config, db_path)}"
    err.print(f"{summary.total} message(s): {counts or 'none'}; {stored}")
    if summary.interrupted is not None:
        name = signal.Signals(summary.interrupted).name
        err.print(f"interrupted by {name}: the messages above are stored; run again for the rest")
        sys.exit(128 + summary.interrupted)  # the shell's convention for a signalled stop
    if readable == 0:
        raise TriageError(
            ", ".join(map(str, paths)),
            "nothing could be read: no .eml file, maildir or mbox found, or none readable",
            "give .eml files, folders of them, maildirs or mbox files",
        )


class _Progress:
    """A progress bar on stderr for long runs on a terminal; silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.progress import Progress

        self.bar = Progress(console=Console(stderr=True), transient=True)
        self.bar.start()
        task = self.bar.add_task("replaying", total=None)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def _row(table: Table, *cells: str) -> None:
    """Cells are data (subjects hold `[#T-…]`), never rich markup."""
    table.add_row(*(escape(c) for c in cells))


def _print_decisions(decisions: list[Decision], acks: list[Acknowledgement]) -> None:
    out = Console()
    tickets = Table(title="Tickets", show_lines=False)
    for col in ("ticket", "action", "priority", "due (UTC)", "from", "match", "subject"):
        tickets.add_column(col)
    filtered = Table(title="Filtered, held for review, quarantined and duplicates")
    for col in ("file", "action", "reason", "from / detail"):
        filtered.add_column(col)
    for d in decisions:
        e = d.email
        if d.action in (Action.TICKET, Action.APPEND):
            _row(
                tickets,
                d.ticket or "",
                str(d.action),
                d.priority or "",
                d.due.strftime("%Y-%m-%d %H:%M") if d.due else "none",
                e.from_addr if e else "",
                d.match,
                (e.subject if e else "")[:60],
            )
        else:
            detail = e.from_addr if e else (d.reasons[0] if d.reasons else "")
            _row(filtered, Path(d.source).name, str(d.action), d.reason or "", detail[:60])
    out.print(tickets)
    out.print(filtered)
    if acks:
        table = Table(title="Acknowledgements that would be sent")
        for col in ("ticket", "to", "subject"):
            table.add_column(col)
        for ack in acks:
            _row(table, ack.ticket, ack.to, ack.subject)
        out.print(table)


def _print_deliveries(queued: list) -> None:
    if not queued:
        return
    table = Table(title="Sink deliveries that would be sent")
    for col in ("sink", "event", "ticket"):
        table.add_column(col)
    for q in queued:
        _row(table, q.sink, q.event.type, q.event.ticket or "")
    Console().print(table)


def register(cli: click.Group) -> None:
    cli.add_command(replay)
