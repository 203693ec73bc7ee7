"""`triage check`: validate the configuration, the rules and every file they name."""

from __future__ import annotations

import click

from triage.cli.common import CONFIG
from triage.config import load_config
from triage.errors import TriageError


@click.command()
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
    from triage.engine.loading import rules_for
    from triage.service import connections, probes

    config = load_config(config_path)
    if config.database is None:
        rules = rules_for(config)
    else:  # a server's contacts are not read: check asks no server without --connect
        from triage.core.pipeline import Rules

        rules = Rules.load(config, ())
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
    click.echo(_objectives_line(config))
    if config.database is None:
        click.echo(f"store    {config.db}")
    else:
        click.echo(
            f"store    {config.database.shown} (PostgreSQL), files in {config.database.files}"
        )
    if config.contacts_file is not None:
        click.echo(f"contacts {config.contacts_file}")
    for mb in config.mailboxes:
        click.echo(
            f"mailbox  {mb.name}: {mb.username} at {mb.host}:{mb.port} ({mb.tls}), "
            f"folder {mb.folder}, then {mb.after}, password from {mb.secret}"
        )
    for server in connections.plan(config.mailboxes, config.daemon.max_imap_connections).values():
        click.echo(f"imap     {server.line()}")
    for mb in config.graph_mailboxes:
        cred = mb.credentials
        click.echo(
            f"mailbox  {mb.name}: {mb.user} through Microsoft Graph ({mb.graph_url}), "
            f"app {cred.client_id} in tenant {cred.tenant_id}, folder {mb.folder}, "
            f"then {mb.after}, {'certificate key' if cred.certificate_file else 'client secret'}"
            f" from {cred.secret}"
        )
    if config.graph_sending is not None:
        click.echo(f"smtp     sendMail as {config.graph_sending.user} through Microsoft Graph")
    if config.smtp is not None:
        smtp = config.smtp
        login = (
            f"login {smtp.username}, password from {smtp.secret}" if smtp.username else "no login"
        )
        click.echo(f"smtp     {smtp.host}:{smtp.port} ({smtp.tls}), {login}")
    for sink in config.sinks:
        click.echo(
            f"sink     {sink.name}: {_sink_line(sink)}; events {', '.join(sorted(sink.subscription.events))}"
        )
    findings = preflight.check(config)
    for finding in findings:
        click.echo(f"{finding.level:8} {finding}")
    errors = [f for f in findings if f.level == preflight.ERROR]
    if errors:
        first = errors[0]
        raise TriageError(
            first.where,
            f"[{first.key}] {first.problem} ({len(errors)} problem(s) above; this is the first)",
            first.fix,
        )
    if connect:
        if not (config.mailboxes or config.graph_mailboxes or config.smtp or config.graph_sending):
            click.echo("connect  nothing to connect to: no [[mailbox]] and no [smtp]")
        results = asyncio.run(
            probes.all_of(
                config.mailboxes,
                config.smtp,
                config.graph_mailboxes,
                config.graph_sending,
                config.daemon.max_imap_connections,
            )
        )
        for probe in results:
            for line in probe.lines():
                click.echo(line)
        failed = [p for p in results if not p.ok]
        if failed:
            raise click.ClickException("; ".join(f"{p.what}: {p.found[0]}" for p in failed))
    click.echo("ok")


def _objectives_line(config) -> str:
    """rules/objectives.toml checked against the policies in rules/sla/ (ObjectiveError names
    the file, the key and the fix)."""
    from triage.core import sla as sla_mod
    from triage.desk import objectives

    path = config.rules_dir / objectives.FILE
    if not path.is_file():
        return f"objectives {path}: none (every policy holds every ticket to its deadline)"
    found = objectives.load(path, known=sla_mod.load_policies(config.sla_dir))
    stated = ", ".join(f"{o.policy} {o.percent:g} %" for o in found.values()) or "none stated"
    return f"objectives {path}: {stated}"


def _sink_line(sink) -> str:
    """Where a sink sends, without its secrets (a chat webhook's URL is one)."""
    settings = sink.settings
    if sink.kind == "webhook":
        return f"webhook to {settings.url}"
    if sink.kind == "connectwise":
        return f"connectwise at {settings.api}, board {settings.board}"
    if sink.kind == "email":
        return f"email to {', '.join(settings.to)}"
    return f"{sink.kind}, webhook URL from {settings.url}"


def register(cli: click.Group) -> None:
    cli.add_command(check)
