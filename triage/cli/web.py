"""`triage web`: the technicians' read-only page (triage.desk.web), served until stopped."""

from __future__ import annotations

import click

from triage.cli.common import CONFIG, DB, no_database
from triage.config import load_config


@click.command("web")
@CONFIG
@DB
@click.option(
    "--listen",
    default="127.0.0.1:8001",
    show_default=True,
    help="HOST:PORT to serve on; loopback unless a reverse proxy needs another address.",
)
@click.option(
    "--base-url",
    default="/",
    show_default=True,
    help="The path a reverse proxy serves the page under, e.g. /desk/.",
)
def web(config_path, db_path, listen, base_url) -> None:
    """Serve the read-only page for technicians: the queue, at risk, today's filtered mail,
    the review list, each ticket with its thread, full-text search.

    Reads the database only (never the write lock); SIGINT or SIGTERM stops it. It has no
    login of its own: keep it on loopback behind a reverse proxy that authenticates
    (docs/desk.md).

    Example:

    \b
        triage web --db /var/lib/triage/triage.db --listen 127.0.0.1:8001 --base-url /desk/
    """
    from triage.core import sla as sla_mod
    from triage.desk import web as desk_web
    from triage.desk.listen import Listen

    config = load_config(config_path)
    path = db_path or config.db
    if not path.is_file():
        raise no_database(path)
    where = Listen.parse(listen, where="--listen", default_port=8001)
    if not where.loopback:
        click.echo(
            f"warning: --listen {where} is not loopback: the page has no login; put it behind"
            " a reverse proxy that authenticates (docs/desk.md)",
            err=True,
        )
    policies = sla_mod.load_policies(config.sla_dir)
    desk_web.serve(
        path,
        where,
        policies=policies,
        timezone=config.timezone,
        prefix=config.ticket_prefix,
        base_url=base_url,
        on_ready=lambda url: click.echo(f"serving {path} read-only: {url}  (Ctrl-C stops)"),
    )


def register(cli: click.Group) -> None:
    cli.add_command(web)
