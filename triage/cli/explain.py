"""`triage explain`: the decision trace for one message, for people."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from triage.cli.common import CONFIG, instant, no_database, store_at
from triage.config import load_config


@click.command()
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
    from triage.engine.explain import explain as decision_for
    from triage.engine.loading import rules_for

    if db_path is not None and not db_path.is_file():
        raise no_database(db_path)
    config = load_config(config_path)
    rules = rules_for(config, db_path)
    store = store_at(db_path, config.ticket_prefix)
    d = decision_for(path.read_bytes(), str(path), rules, store, instant(now_text, "--now"))
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


def register(cli: click.Group) -> None:
    cli.add_command(explain)
