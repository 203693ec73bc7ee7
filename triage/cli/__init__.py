"""The `triage` command line: thin; parses options and calls the modules."""

from __future__ import annotations

import importlib
import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from triage import log
from triage.cli.common import CONFIG, DB, Group, config_or_fail, instant, open_store, store_at
from triage.config import Config, ConfigError, load_config
from triage.core.filters import RuleError
from triage.core.pipeline import Action, Decision, Rules


def _fail(message: str) -> click.ClickException:
    return click.ClickException(message)


def _load(config_path: Path | None, db_path: Path | None = None) -> tuple[Config, Rules]:
    """Config and rules, with the contacts of `db_path` (the configured database when None)."""
    from dataclasses import replace

    from triage.store import contacts as contacts_store  # the directory lives in the database

    try:
        config = load_config(config_path)
        where = config if db_path is None else replace(config, db=db_path)
        return config, Rules.load(config, contacts_store.load_for(where))
    except (ConfigError, RuleError, ValueError) as exc:  # ConfigError also for evidence.toml
        raise _fail(str(exc)) from None


def _now(value: str | None) -> datetime:
    return instant(value, "--now")


@click.group(cls=Group)
@click.version_option(package_name="triage", prog_name="triage", message="%(prog)s %(version)s")
@click.option(
    "--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"])
)
def cli(log_level: str) -> None:
    """triage: turn a support mailbox into tickets, and never answer a robot."""
    log.setup(log_level)


@cli.command()
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
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def replay(config_path, db_path, dry_run, now_text, as_json, workers, acks_dir, paths) -> None:
    """Run the whole pipeline over .eml files, folders, maildirs or mbox files.

    Nothing is sent: acknowledgements are recorded (and written to --acks-dir).

    Example:

    \b
        triage replay --dry-run --json --now 2026-03-06T16:30:00Z fixtures/emails
    """
    from triage.engine.replay import replay as run
    from triage.sources.files import iter_paths

    if db_path and dry_run:
        raise click.UsageError("--db and --dry-run exclude each other: choose one")
    config, rules = _load(config_path, db_path)
    now = _now(now_text)
    store = store_at(None if dry_run else (db_path or config.db), config.ticket_prefix)
    store.outbox_status = "replay"
    first_outbox = store.conn.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()[0]
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

    with _progress(enabled=not as_json) as advance:

        def tick(d: Decision) -> None:
            emit(d)
            advance()

        summary = run(iter_paths(list(paths)), rules, store, now, tick, workers=workers)
    acks = store.conn.execute(
        "SELECT o.id, t.number, o.to_addr, o.subject, o.raw FROM outbox o JOIN tickets t ON t.id = o.ticket_id"
        " WHERE o.id > ? ORDER BY o.id",
        (first_outbox,),
    ).fetchall()
    store.close()
    err = Console(stderr=True)
    if not as_json:
        _print_decisions(decisions, acks)
    if acks_dir is not None:
        acks_dir.mkdir(parents=True, exist_ok=True)
        for _id, number, _to, _subject, raw in acks:
            (acks_dir / f"{number}.eml").write_text(raw, encoding="utf-8")
        err.print(f"wrote {len(acks)} acknowledgement(s) that would be sent to {acks_dir}/")
    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary.counts.items()))
    where = "nothing stored (dry run)" if dry_run else f"stored in {db_path or config.db}"
    err.print(f"{summary.total} message(s): {counts or 'none'}; {where}")
    if summary.interrupted is not None:
        name = signal.Signals(summary.interrupted).name
        err.print(f"interrupted by {name}: the messages above are stored; run again for the rest")
        sys.exit(128 + summary.interrupted)  # the shell's convention for a signalled stop
    if readable == 0:
        raise _fail(
            f"nothing could be read from {', '.join(map(str, paths))}: no .eml file, maildir or mbox found, or none readable"
        )


class _progress:
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


def _print_decisions(decisions: list[Decision], acks: list) -> None:
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
        for _id, number, to, subject, _raw in acks:
            _row(table, number, to, subject)
        out.print(table)


@cli.command()
@CONFIG
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read conversations from this database (nothing is written).",
)
@click.option("--now", "now_text", help="Fix the clock (ISO 8601).")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def explain(config_path, db_path, now_text, path) -> None:
    """Print the decision trace for one message, for people.

    Example:

    \b
        triage explain fixtures/emails/12-severity1-subject.eml
    """

    if db_path is not None and not db_path.is_file():
        raise _fail(
            f"{db_path}: no database here; fix: give the --db of `triage replay` or `triage run`"
        )
    config, rules = _load(config_path, db_path)
    from triage.engine.explain import explain as decision_for

    store = store_at(db_path, config.ticket_prefix)
    d = decision_for(path.read_bytes(), str(path), rules, store, _now(now_text))
    store.close()
    out = Console()
    out.print(f"[bold]{path}[/bold]")
    if d.email:
        e = d.email
        out.print(f"  from     {e.from_display}")
        out.print(f"  subject  {e.subject}")
        out.print(f"  key      {e.key}")
    out.print(f"  action   [bold]{d.action}[/bold]" + (f" ({d.reason})" if d.reason else ""))
    if d.priority:
        out.print(f"  priority {d.priority}   due {d.due.isoformat() if d.due else 'none'}")
    out.print("  why:")
    for reason in d.reasons:
        out.print(f"    - {reason}", markup=False, highlight=False)


@cli.command()
@CONFIG
@click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--open", "open_only", is_flag=True, help="Only tickets not closed.")
@click.option(
    "--breached", is_flag=True, help="Only tickets past their response deadline with no response."
)
@click.option(
    "--at-risk",
    "at_risk",
    is_flag=True,
    help="Only unanswered tickets that used 75 % of their allowed time.",
)
@click.option(
    "--now", "now_text", help="The instant --breached and --at-risk compare with (default: now)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per ticket.")
def tickets(config_path, db_path, open_only, breached, at_risk, now_text, as_json) -> None:
    """List tickets.

    Example:

    \b
        triage tickets --open --breached
    """
    from triage.core import sla as sla_mod
    from triage.service import tracking

    config = _config_only(config_path)
    path = db_path or config.db
    if not path.exists():
        raise _fail(
            f"{path}: no database here; fix: run `triage replay` or `triage run` first, or pass --db"
        )
    store = store_at(path, config.ticket_prefix)
    now = _now(now_text)
    rows = list(store.tickets(open_only))
    if breached:
        keep = set(tracking.breached(store, now))
        rows = [r for r in rows if r["number"] in keep]
    if at_risk:
        keep = set(tracking.at_risk(store, sla_mod.load_policies(config.sla_dir), now))
        rows = [r for r in rows if r["number"] in keep]
    store.close()
    if as_json:
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    table = Table(title=f"Tickets in {path}")
    for col in ("ticket", "status", "priority", "due (UTC)", "requester", "match", "subject"):
        table.add_column(col)
    for r in rows:
        _row(
            table,
            r["number"],
            r["status"],
            r["priority"] or "",
            (r["response_due"] or "none")[:16],
            r["requester"],
            r["match"] or "",
            (r["subject"] or "")[:60],
        )
    Console().print(table)


def _config_only(config_path: Path | None) -> Config:
    return config_or_fail(config_path)


@cli.command()
@CONFIG
@click.option(
    "--connect",
    is_flag=True,
    help="Also log in to every mailbox and the SMTP relay and say what was found.",
)
def check(config_path, connect) -> None:
    """Validate the configuration, every rule file and every file they name; exit non-zero
    on a problem, naming the file, the key and the fix.

    Without a network it checks ranges, that files exist, that password files are
    private and that rules, contacts and CA files are not writable by everyone.
    With --connect it logs in to each mailbox (IMAP) and the relay (SMTP): the
    folder and its messages, the server's capabilities, whether the login works.

    Example:

    \b
        triage check --config /etc/triage/triage.toml
    """
    import asyncio

    from triage.config import preflight
    from triage.service import probes

    config, rules = _load(config_path)
    enabled = sum(r.enabled for r in rules.filters.rules)
    click.echo(f"config   {config.path}")
    click.echo(
        f"filters  {config.filters_file}: {len(rules.filters.rules)} rules ({enabled} enabled)"
    )
    click.echo(f"priority {config.priority_file}: ok")
    weak = sum(r.enabled and r.weak for r in rules.filters.rules)
    click.echo(
        f"evidence {rules.evidence.path}: {weak} weak rule(s) weighed; review needs {rules.evidence.needs} signs of a person"
    )
    click.echo(
        f"replies  {config.rules_dir / 'templates'}: acknowledgement{' (with HTML)' if rules.templates.ack_html else ''} and held-sender templates render"
    )
    click.echo(
        f"sla      {config.sla_dir}: policy {rules.policy.name}, plan {config.plan or rules.policy.default_plan}, time zone {config.timezone}"
    )
    click.echo(f"store    {config.db}")
    if config.contacts_file is not None:
        click.echo(f"contacts {config.contacts_file}")
    for mb in config.mailboxes:
        click.echo(
            f"mailbox  {mb.name}: {mb.username} at {mb.host}:{mb.port} ({mb.tls}), "
            f"folder {mb.folder}, then {mb.after}, password from {mb.secret}"
        )
    if config.smtp is not None:
        smtp = config.smtp
        login = (
            f"login {smtp.username}, password from {smtp.secret}" if smtp.username else "no login"
        )
        click.echo(f"smtp     {smtp.host}:{smtp.port} ({smtp.tls}), {login}")
    findings = preflight.check(config)
    for finding in findings:
        click.echo(f"{finding.level:8} {finding}")
    errors = [f for f in findings if f.level == preflight.ERROR]
    if errors:
        raise _fail(f"{len(errors)} problem(s) above; first: {errors[0]}")
    if connect:
        if not config.mailboxes and config.smtp is None:
            click.echo("connect  nothing to connect to: no [[mailbox]] and no [smtp]")
        results = asyncio.run(probes.all_of(config.mailboxes, config.smtp))
        for probe in results:
            for line in probe.lines():
                click.echo(line)
        failed = [p for p in results if not p.ok]
        if failed:
            raise _fail("; ".join(f"{p.what}: {p.found[0]}" for p in failed))
    click.echo("ok")


@cli.group()
def contacts() -> None:
    """The contact directory: import, list, show, approve."""


def _store_for(config_path: Path | None, db_path: Path | None):
    return open_store(_config_only(config_path), db_path, create=True)


@contacts.command("import")
@CONFIG
@DB
@click.argument(
    "csv_path", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def contacts_import(config_path, db_path, csv_path) -> None:
    """Import or update contacts from a CSV file (email, name, company, site, plan, timezone, vip, aliases).

    Good rows import even when others are rejected; every rejection names its line.
    Without a file, the one named by [contacts] file is imported.

    Example:

    \b
        triage contacts import fixtures/contacts.csv
    """
    from triage.core import contact_rows as contacts_csv
    from triage.store import contacts as contacts_store

    if csv_path is None:
        configured = _config_only(config_path).contacts_file
        if configured is None:
            raise click.UsageError(
                "no CSV file given and none configured; fix: give FILE.csv, or set"
                ' [contacts] file = "/etc/triage/contacts.csv"'
            )
        if not configured.is_file():
            raise _fail(f"{configured}: [contacts.file] does not exist; fix: give the CSV's path")
        csv_path = configured
    try:
        result = contacts_csv.parse(csv_path.read_bytes(), str(csv_path))
    except ValueError as exc:
        raise _fail(str(exc)) from None
    store = _store_for(config_path, db_path)
    report = contacts_store.save(store, result)
    store.close()
    click.echo(
        f"{csv_path}: {report.added} added, {report.updated} updated, {len(report.rejected)} rejected"
    )
    for note in result.notes:
        click.echo(f"  note: {note}", err=True)
    for r in report.rejected:
        click.echo(f"  line {r.line}: {r.reason}", err=True)


@contacts.command("list")
@CONFIG
@DB
def contacts_list(config_path, db_path) -> None:
    """List known contacts.

    Example:

    \b
        triage contacts list
    """
    from triage.store import contacts as contacts_store

    store = _store_for(config_path, db_path)
    rows = contacts_store.load(store)
    store.close()
    table = Table(title="Contacts")
    for col in ("email", "name", "company", "plan", "timezone", "vip", "approved"):
        table.add_column(col)
    for c in rows:
        _row(
            table,
            c.email,
            c.name,
            c.company,
            c.plan or "",
            c.timezone or "",
            "yes" if c.vip else "",
            "yes" if c.approved else "no",
        )
    Console().print(table)


@contacts.command("show")
@CONFIG
@DB
@click.argument("email")
def contacts_show(config_path, db_path, email) -> None:
    """Show one contact.

    Example:

    \b
        triage contacts show jane@acme.example
    """
    from triage.store import contacts as contacts_store

    store = _store_for(config_path, db_path)
    found = [c for c in contacts_store.load(store) if c.email == email.strip().lower()]
    store.close()
    if not found:
        raise _fail(f"no contact {email}; fix: `triage contacts list` shows who is known")
    for key in found[0].__class__.__dataclass_fields__:
        click.echo(f"{key:10} {getattr(found[0], key)}")


@contacts.command("approve")
@CONFIG
@DB
@click.argument("email")
def contacts_approve(config_path, db_path, email) -> None:
    """Approve a sender: their held tickets open, later mail is served.

    Example:

    \b
        triage contacts approve newcomer@acme.example
    """
    from triage.store import contacts as contacts_store

    config = _config_only(config_path)
    store = _store_for(config_path, db_path)
    released = contacts_store.approve(store, email, config, datetime.now(UTC))
    store.close()
    click.echo(f"approved {email.strip().lower()}")
    if released:
        click.echo(
            f"released {len(released)} held ticket(s), acknowledgement queued: {', '.join(released)}"
        )


@cli.group()
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

    config = _config_only(config_path)
    try:
        policies = sla_mod.load_policies(config.sla_dir)
        if policy not in policies:
            raise _fail(
                f"{config.sla_dir}: no policy {policy!r}; fix: use one of {sorted(policies)}"
            )
        chosen = policies[policy]
        deadline = sla_mod.due(
            chosen, plan, chosen.rank_of(priority), _now(at_text), tz or config.timezone
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    click.echo(deadline.due.isoformat() if deadline.due else "none")


def _register_extensions() -> None:
    """Command groups that live in their own modules, attached to `cli`.

    Imported by name: this package's own `sla` and `review` are click groups.
    """
    for name in ("sla", "daemon", "review", "filtered"):
        importlib.import_module(f"triage.cli.{name}").register(cli)


_register_extensions()


def main() -> None:
    cli(prog_name="triage")


if __name__ == "__main__":
    main()
