"""The servers triage talks to: mailboxes (IMAP), the SMTP relay, and the daemon's settings.

Each table is read into a frozen value; every error names the file, the key and the
fix, like the rest of the config. Passwords and tokens come from their sources
(triage.config.credentials), never from the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from triage.config import fields
from triage.config.credentials import PASSWORD_KEYS, Secret, SecretError, password
from triage.core import leases
from triage.desk.listen import Listen, ListenError
from triage.errors import ConfigError

__all__ = [
    "AFTER_MODES",
    "DAEMON_KEYS",
    "MAILBOX_KEYS",
    "SMTP_KEYS",
    "TLS_MODES",
    "Daemon",
    "Mailbox",
    "Secret",
    "SecretError",
    "Smtp",
    "parse_daemon",
    "parse_mailboxes",
    "parse_smtp",
]

TLS_MODES = ("tls", "starttls", "none")
AFTER_MODES = ("move", "flag", "delete")
IDLE_MAX = 29 * 60.0  # RFC 2177: a server may log out a client idle for 30 minutes
BATCH_MAX = 10_000
MAX_CONNECTIONS = (
    10_000  # [daemon] max_imap_connections: each is a file descriptor and a TLS session
)
_ATOM = re.compile(r"\$?[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True, slots=True)
class Mailbox:
    name: str
    host: str
    port: int
    tls: str
    username: str
    secret: Secret
    oauth: bool = False  # XOAUTH2 with a token from `secret` (a command)
    folder: str = "INBOX"
    after: str = "move"
    processed_folder: str = "Triage/Processed"
    filtered_folder: str = "Triage/Filtered"
    errors_folder: str = "Triage/Errors"
    review_folder: str = "Triage/Review"  # mail held for review (`triage review`)
    keyword: str = "$Triaged"
    ca_file: str | None = None
    poll_seconds: float = 60.0
    idle_seconds: float = 25 * 60.0  # RFC 2177: renew IDLE before the server's 30-minute limit
    batch: int = 100
    timeout: float = 30.0
    use_idle: bool = True  # false: poll every poll_seconds even when the server offers IDLE


@dataclass(frozen=True, slots=True)
class Smtp:
    host: str
    port: int
    tls: str
    username: str | None = None
    secret: Secret | None = None
    ca_file: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class Daemon:
    message_timeout: float = 30.0
    alert_after_failures: int = 5
    stalled_minutes: float = 15.0  # a mailbox with mail but no progress for this long is failing
    operator: str | None = None
    sla_check_seconds: float = 300.0
    backoff_max_seconds: float = 300.0
    outbox_seconds: float = 15.0  # how often the outbox is tried when nothing new arrives
    metrics_listen: Listen | None = None  # where the daemon serves Prometheus metrics; off
    # IMAP connections open at once to one server (host and port), whatever the mailboxes;
    # beyond it mailboxes take turns (triage.service.connections)
    max_imap_connections: int = 100
    # how long a daemon's hold on a mailbox or timer lasts unrenewed, on a PostgreSQL store
    # shared by several daemons (triage.core.leases); SQLite has one daemon and no leases
    lease_seconds: float = 30.0


# What every server connection takes: where, how securely, who, and the password's source.
ENDPOINT_KEYS = frozenset(
    {"host", "port", "tls", "allow_insecure", "username", "ca_file", "timeout", *PASSWORD_KEYS}
)
MAILBOX_KEYS = ENDPOINT_KEYS | {
    "name",
    "kind",
    "oauth_command",
    "folder",
    "after",
    "processed_folder",
    "filtered_folder",
    "errors_folder",
    "review_folder",
    "keyword",
    "poll_seconds",
    "idle_seconds",
    "batch",
    "use_idle",
}
SMTP_KEYS = ENDPOINT_KEYS | {"kind"}
MAILBOX_KINDS = ("imap", "graph")  # graph: triage.config.graph reads it
SMTP_KINDS = ("smtp", "graph")
DAEMON_KEYS = frozenset(
    {
        "message_timeout",
        "alert_after_failures",
        "stalled_minutes",
        "operator",
        "sla_check_seconds",
        "backoff_max_seconds",
        "outbox_seconds",
        "metrics_listen",
        "max_imap_connections",
        "lease_seconds",
    }
)


def parse_mailboxes(path: Path | str, raw: object) -> tuple[Mailbox, ...]:
    """[[mailbox]] tables read over IMAP, each with its own name (those with kind = "graph"
    are triage.config.graph's)."""
    if not isinstance(raw, list):
        raise ConfigError(
            path, "mailbox", "must be an array of tables", "write [[mailbox]] then name = ..."
        )
    seen: set[str] = set()
    out = []
    for n, item in enumerate(raw):
        key = f"mailbox[{n}]"
        kind = item.get("kind", "imap") if isinstance(item, dict) else "imap"
        if kind not in MAILBOX_KINDS:
            raise ConfigError(
                path, f"{key}.kind", f"{kind!r} is not known", f"use one of {list(MAILBOX_KINDS)}"
            )
        if kind == "graph":
            continue
        t = fields.table(path, key, item, MAILBOX_KEYS)
        name = fields.text(path, key, t, "name", required=True)
        if name in seen:
            raise ConfigError(
                path, f"{key}.name", f"{name!r} is used twice", "give each mailbox its own name"
            )
        seen.add(name)
        tls = _tls(path, key, t)
        after = t.get("after", "move")
        if after not in AFTER_MODES:
            raise ConfigError(
                path, f"{key}.after", f"{after!r} is not known", f"use one of {list(AFTER_MODES)}"
            )
        oauth = "oauth_command" in t
        secret = (
            Secret("command", fields.text(path, key, t, "oauth_command"))
            if oauth
            else password(path, key, t, required=True)
        )
        out.append(
            Mailbox(
                name=name,
                host=fields.text(path, key, t, "host", required=True),
                port=fields.port(path, key, t, 993 if tls == "tls" else 143),
                tls=tls,
                username=fields.text(path, key, t, "username", required=True),
                secret=secret,
                oauth=oauth,
                folder=_folder(path, key, t, "folder", "INBOX"),
                after=after,
                processed_folder=_folder(path, key, t, "processed_folder", "Triage/Processed"),
                filtered_folder=_folder(path, key, t, "filtered_folder", "Triage/Filtered"),
                errors_folder=_folder(path, key, t, "errors_folder", "Triage/Errors"),
                review_folder=_folder(path, key, t, "review_folder", "Triage/Review"),
                keyword=_keyword(path, key, t),
                ca_file=_ca_file(path, key, t),
                poll_seconds=fields.number(path, key, t, "poll_seconds", 60.0),
                idle_seconds=fields.number(path, key, t, "idle_seconds", 25 * 60.0, high=IDLE_MAX),
                batch=fields.whole(path, key, t, "batch", 100, high=BATCH_MAX),
                timeout=fields.number(path, key, t, "timeout", 30.0),
                use_idle=fields.flag(path, key, t, "use_idle", True),
            )
        )
    return tuple(out)


def parse_smtp(path: Path | str, raw: object) -> Smtp | None:
    """The [smtp] relay, or None when the table is absent (nothing is sent)."""
    if raw is None:
        return None
    kind = raw.get("kind", "smtp") if isinstance(raw, dict) else "smtp"
    if kind not in SMTP_KINDS:
        raise ConfigError(
            path, "smtp.kind", f"{kind!r} is not known", f"use one of {list(SMTP_KINDS)}"
        )
    if kind == "graph":
        return None  # sent through Graph: triage.config.graph reads the table
    t = fields.table(path, "smtp", raw, SMTP_KEYS)
    tls = _tls(path, "smtp", t)
    username = fields.text(path, "smtp", t, "username") or None
    return Smtp(
        host=fields.text(path, "smtp", t, "host", required=True),
        port=fields.port(path, "smtp", t, {"tls": 465, "starttls": 587, "none": 25}[tls]),
        tls=tls,
        username=username,
        secret=password(path, "smtp", t, required=username is not None),
        ca_file=_ca_file(path, "smtp", t),
        timeout=fields.number(path, "smtp", t, "timeout", 30.0),
    )


def parse_daemon(path: Path | str, raw: object) -> Daemon:
    """[daemon]: every key has a default, so the table may be absent."""
    t = fields.table(path, "daemon", raw or {}, DAEMON_KEYS)
    return Daemon(
        message_timeout=fields.number(path, "daemon", t, "message_timeout", 30.0),
        alert_after_failures=fields.whole(path, "daemon", t, "alert_after_failures", 5),
        stalled_minutes=fields.number(path, "daemon", t, "stalled_minutes", 15.0),
        operator=_operator(path, t),
        sla_check_seconds=fields.number(path, "daemon", t, "sla_check_seconds", 300.0),
        backoff_max_seconds=fields.number(path, "daemon", t, "backoff_max_seconds", 300.0),
        outbox_seconds=fields.number(path, "daemon", t, "outbox_seconds", 15.0),
        metrics_listen=_metrics_listen(path, t),
        max_imap_connections=fields.whole(
            path, "daemon", t, "max_imap_connections", 100, high=MAX_CONNECTIONS
        ),
        # a renewal every third of it must outrun the database's latency; a dead daemon's
        # mailboxes wait it out (triage.core.leases)
        lease_seconds=fields.number(
            path,
            "daemon",
            t,
            "lease_seconds",
            30.0,
            low=leases.MIN_SECONDS,
            high=leases.MAX_SECONDS,
        ),
    )


def _metrics_listen(path: Path | str, t: dict) -> Listen | None:
    """[daemon] metrics_listen: HOST:PORT (an IP address, or localhost), or absent: off."""
    if "metrics_listen" not in t:
        return None
    value = fields.text(path, "daemon", t, "metrics_listen")
    try:
        return Listen.parse(value, where="metrics_listen", default_port=9108)
    except ListenError as exc:
        problem = exc.problem.removeprefix("metrics_listen: ")
        raise ConfigError(path, "daemon.metrics_listen", problem, exc.fix) from None


def _tls(path: Path | str, key: str, t: dict) -> str:
    tls = t.get("tls", "tls")
    if tls not in TLS_MODES:
        raise ConfigError(
            path, f"{key}.tls", f"{tls!r} is not known", f"use one of {list(TLS_MODES)}"
        )
    if tls == "none" and t.get("allow_insecure") is not True:
        raise ConfigError(
            path,
            f"{key}.tls",
            "'none' sends the password in clear text",
            'use tls = "tls" or "starttls", or add allow_insecure = true for a local test server',
        )
    return tls


def _ca_file(path: Path | str, key: str, t: dict) -> str | None:
    return fields.beside(path, fields.text(path, key, t, "ca_file")) if t.get("ca_file") else None


def _folder(path: Path | str, key: str, t: dict, name: str, default: str) -> str:
    if name not in t:
        return default
    value = fields.text(path, key, t, name)
    if not value or not value.isprintable():
        raise ConfigError(
            path,
            f"{key}.{name}",
            f"{t[name]!r} is not a folder name",
            f'write {name} = "{default}"',
        )
    return value


def _keyword(path: Path | str, key: str, t: dict) -> str:
    """An IMAP keyword (RFC 3501 flag-keyword: an atom; a leading backslash is a system flag)."""
    value = fields.text(path, key, t, "keyword") or "$Triaged"
    if not _ATOM.fullmatch(value):
        raise ConfigError(
            path,
            f"{key}.keyword",
            f"{value!r} is not an IMAP keyword (letters, digits and $_.-, no spaces, no backslash)",
            'write keyword = "$Triaged"',
        )
    return value


def _operator(path: Path | str, t: dict) -> str | None:
    value = fields.text(path, "daemon", t, "operator") or None
    if value is not None:
        fields.address(path, "daemon.operator", value, 'write operator = "ops@example.com"')
    return value
