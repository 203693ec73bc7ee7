"""`triage contacts`: the contact directory (import, list, show, approve)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from triage.cli.common import CONFIG, DB, open_store, print_table
from triage.config import Config, load_config
from triage.errors import ConfigError, TriageError


@click.group()
def contacts() -> None:
    """The contact directory: import, list, show, approve."""


def _store(config: Config, db_path: Path | None):
    """The directory lives in the database: created on first use."""
    return open_store(config, db_path, create=True)


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
    from triage.core import contact_rows
    from triage.store import contacts as contacts_store

    config = load_config(config_path)
    if csv_path is None:
        if config.contacts_file is None:
            raise click.UsageError(
                "no CSV file given and none configured; fix: give FILE.csv, or set"
                ' [contacts] file = "/etc/triage/contacts.csv"'
            )
        if not config.contacts_file.is_file():
            raise ConfigError(
                config.contacts_file, "contacts.file", "does not exist", "give the CSV's path"
            )
        csv_path = config.contacts_file
    result = contact_rows.parse(csv_path.read_bytes(), str(csv_path))
    store = _store(config, db_path)
    try:
        report = contacts_store.save(store, result)
    finally:
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

    store = _store(load_config(config_path), db_path)
    try:
        rows = contacts_store.load(store)
    finally:
        store.close()
    print_table(
        "Contacts",
        ("email", "name", "company", "plan", "timezone", "vip", "approved"),
        (
            (
                c.email,
                c.name,
                c.company,
                c.plan or "",
                c.timezone or "",
                "yes" if c.vip else "",
                "yes" if c.approved else "no",
            )
            for c in rows
        ),
    )


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

    store = _store(load_config(config_path), db_path)
    try:
        found = [c for c in contacts_store.load(store) if c.email == email.strip().lower()]
    finally:
        store.close()
    if not found:
        raise TriageError(email, "no such contact", "`triage contacts list` shows who is known")
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

    config = load_config(config_path)
    store = _store(config, db_path)
    try:
        released = contacts_store.approve(store, email, config, datetime.now(UTC))
    finally:
        store.close()
    click.echo(f"approved {email.strip().lower()}")
    if released:
        click.echo(
            f"released {len(released)} held ticket(s), acknowledgement queued: {', '.join(released)}"
        )


def register(cli: click.Group) -> None:
    cli.add_command(contacts)
