"""What every command module shares: the --config and --db options, instants, opening
things, and the one place where triage's errors become the command line's.

A command raises `TriageError` (or lets one through) and `guard` prints it in the one
format (`<where>: <problem>` and `  fix: <fix>`), so each command stays a few lines long.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from triage import instants
from triage.config import Config, load_config
from triage.errors import InstantError, TriageError

CONFIG = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="TRIAGE_CONFIG",
    help="TOML configuration file (default: built-in defaults).",
)
DB = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Database (default from config: ./triage.db).",
)

# ctx.meta key: what a command's failure is prefixed with ("not starting: " for `run`)
FAILING = "triage.failing"


def instant(value: str | None, hint: str = "--now") -> datetime:
    """An option's ISO 8601 instant (zone required) -> aware UTC; None -> the current time."""
    if not value:
        return datetime.now(UTC)
    try:
        return instants.parse(value)
    except InstantError as exc:
        raise click.BadParameter(f"{exc.problem}; {exc.fix}", param_hint=hint) from None


def no_database(path: Path) -> TriageError:
    return TriageError(
        path,
        "no database here",
        "run `triage replay` or `triage run` first, or pass --db",
    )


def where(config: Config, db_path: Path | None) -> str:
    """The store a command works on, as its messages name it: --db, or the PostgreSQL URL
    (`[store] url`, no secret in it), or the configured file."""
    if db_path is None and config.database is not None:
        return config.database.shown
    return str(db_path or config.db)


def open_store(config: Config, db_path: Path | None, create: bool = False):
    """The store at --db, or the configured PostgreSQL database (`[store] url`), or the
    configured path; an existing one unless `create`."""
    if db_path is None and config.database is not None:
        return postgres_store(config)
    path = db_path or config.db
    if not create and not path.is_file():
        raise no_database(path)
    return store_at(path, config.ticket_prefix)


def systemic(source) -> tuple[type[BaseException], ...]:
    """The database's own errors a read of `source` may raise besides sqlite3's: psycopg's
    when it is the PostgreSQL database of `[store] url` (imported only then)."""
    from triage.config.storage import Database

    if not isinstance(source, Database):
        return ()
    import psycopg

    return (psycopg.Error,)


# How long a command waits for the write lock while another process (the daemon writing
# a batch, the SLA timer) holds it; the daemon's batches take well under a second.
WAIT_SECONDS = 15.0


def store_at(path: Path | None, prefix: str):
    """A Store for a command: waits WAIT_SECONDS for the lock; the path is remembered
    so that a lock held longer is reported with it (see `busy_error`)."""
    from triage.store.sqlite import Store

    ctx = click.get_current_context(silent=True)
    if ctx is not None and path is not None:
        ctx.meta["triage.db"] = path
    return Store(path, prefix, busy_timeout=WAIT_SECONDS)


def postgres_store(config: Config):
    """The store on `[store] url` (psycopg is imported only here, only then)."""
    from triage.store.backends import open_configured

    assert config.database is not None
    return open_configured(config, busy_timeout=WAIT_SECONDS)


def busy_error(exc: BaseException) -> click.ClickException | None:
    """The error to show for a database still locked after the wait; None for other errors."""
    if not isinstance(exc, sqlite3.OperationalError):
        return None
    text = str(exc).lower()
    if "locked" not in text and "busy" not in text:
        return None
    ctx = click.get_current_context(silent=True)
    where = ctx.meta.get("triage.db", "the database") if ctx is not None else "the database"
    return failure(
        TriageError(
            where,
            "the database is locked by another process (the daemon writing a batch, or another"
            f" command) and stayed locked for {WAIT_SECONDS:g} s; the command stopped without"
            " finishing",
            "run it again (what was already stored is not stored twice); `triage status` shows"
            " what the daemon is doing",
        )
    )


def failure(exc: TriageError) -> click.ClickException:
    """The command line's error for `exc`: its one format, after the command's prefix."""
    ctx = click.get_current_context(silent=True)
    prefix = ctx.meta.get(FAILING, "") if ctx is not None else ""
    return click.ClickException(prefix + str(exc))


def guard(command: click.Command) -> None:
    """Make every command under `command` print a TriageError instead of a traceback.

    Done where the error is raised (around each callback), not around the whole group:
    a monitor's command (`status`, `sla check`) then still exits 3 on any error.
    """
    if command.callback is not None and not getattr(command.callback, "_guarded", False):
        command.callback = _guarded(command.callback)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            guard(sub)


# The commands that work on a PostgreSQL store (`[store] url`); every other one that opens
# a store refuses at its start while the configuration names one (docs/operations.md,
# "PostgreSQL: what works today"). A command given --db works on that SQLite file.
POSTGRES_COMMANDS = frozenset(
    {
        "replay",
        "tickets",
        "status",
        "filtered",
        "review",
        "report",
        "check",
        "sla check",
        "sla due",
        "ticket show",
        "ticket assign",
        "ticket note",
        "ticket status",
        "ticket priority",
        "contacts import",
        "contacts list",
        "outbox send",
        "contacts show",
        "contacts approve",
        "explain",
        "errors",
        "errors retry",
        "review release",
        "review digest",
        "ticket respond",
        "outbox",
        "outbox retry",
        "outbox drop",
        "metrics",
        "run",
    }
)


class NeedsSQLite(TriageError, RuntimeError):
    """The command does not work on a PostgreSQL store yet."""


def _refuse_postgres(name: str, kwargs: dict) -> None:
    """Refuse `name` before it does anything when its configuration names a PostgreSQL
    store and the command does not work on one yet (never a half-done write on SQLite's
    default file instead, never a traceback later)."""
    if name in POSTGRES_COMMANDS or "config_path" not in kwargs or kwargs.get("db_path"):
        return
    if kwargs["config_path"] is None:  # the shipped defaults: SQLite
        return
    try:
        config = load_config(kwargs["config_path"])
    except TriageError:  # the command reports its own configuration's errors, its own way
        return
    if config.database is None:
        return
    either = " (or pass --db PATH of an SQLite database)" if "db_path" in kwargs else ""
    raise NeedsSQLite(
        config.path,
        f"`triage {name}` needs SQLite for now, and [store] url names a PostgreSQL database"
        f" ({config.database.shown})",
        f"run it with a configuration whose [store] db names the SQLite file{either};"
        ' docs/operations.md, "PostgreSQL: what works today", lists what works on PostgreSQL',
    )


def _guarded(callback: Callable) -> Callable:
    @functools.wraps(callback)
    def run(*args, **kwargs):
        try:
            ctx = click.get_current_context(silent=True)
            if ctx is not None and "config_path" in kwargs:
                _refuse_postgres(ctx.command_path.split(" ", 1)[-1], kwargs)
            return callback(*args, **kwargs)
        except TriageError as exc:
            raise failure(exc) from None

    run._guarded = True  # type: ignore[attr-defined]
    return run


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    right: Collection[str] = (),
) -> None:
    """A listing as a rich table on stdout (`right`: columns of figures, right-aligned).

    Cells are shown as literal text: values come from mail (subjects hold `[#T-…]`,
    addresses, server answers), so rich markup in them is escaped.
    """
    rows = list(rows)
    if len(rows) > LONG_TABLE:
        _print_plain(title, columns, rows, right)
        return
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right" if col in right else "left")
    for row in rows:
        table.add_row(*(escape(str(cell)) for cell in row))
    Console().print(table)


# Past this many rows a listing is printed as plain aligned columns: rich measures and wraps
# every cell, about a millisecond a row (2 s for the 2,500 open tickets of bench/bigstore.py).
LONG_TABLE = 200
_CONTROL = dict.fromkeys([*range(32), 127], " ")  # no terminal escapes from mail in a cell


def _print_plain(
    title: str, columns: Sequence[str], rows: list[Sequence[object]], right: Collection[str]
) -> None:
    """The same listing as plain text: a title, a header, one line a row, columns aligned."""
    cells = [[str(c).translate(_CONTROL) for c in row] for row in rows]
    widths = [max([len(col), *(len(r[n]) for r in cells)]) for n, col in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if col in right else v.ljust(w)
            for v, w, col in zip(values, widths, columns, strict=True)
        ).rstrip()

    out = [title, line(columns), line(["-" * w for w in widths])]
    out.extend(line(r) for r in cells)
    click.echo("\n".join(out))


class Group(click.Group):
    """The `triage` group: a database locked for too long is a message, not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except sqlite3.OperationalError as exc:
            friendly = busy_error(exc)
            if friendly is None:
                raise
            raise friendly from None


def event_line(e: dict) -> str:
    """One stored event for people: when, what, and its details that say something."""
    detail = e["detail"] if isinstance(e["detail"], dict) else {}
    said = ", ".join(f"{k}={v}" for k, v in detail.items() if v not in (None, ""))
    return f"{e['at']}  {e['kind']}" + (f"  {said}" if said else "")
