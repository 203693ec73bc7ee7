"""`[[mailbox]] kind = "graph"` and `[smtp] kind = "graph"`: Microsoft 365 through Graph.

Read into the values the Graph source and sender take (triage.sources.graph.GraphMailbox,
triage.sinks.graph_mail.GraphSending). Those modules, and msal and httpx with them, are
imported only when a configuration names Graph, so every other command starts as fast as
before. The app's credential (a client secret, or a certificate's private key) comes from a
file, an environment variable or a systemd credential, never from the file itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from triage.config import fields
from triage.config.credentials import Secret
from triage.desk.listen import Listen, ListenError
from triage.errors import ConfigError

if TYPE_CHECKING:
    from triage.sinks.graph_mail import GraphSending
    from triage.sources.graph import GraphMailbox
    from triage.sources.graph_auth import Credentials

SECRET_KEYS = ("client_secret_file", "client_secret_env", "client_secret_credential")
KEY_KEYS = ("certificate_key_file", "certificate_key_env", "certificate_key_credential")
# Who the app is and where Microsoft is: shared by a Graph mailbox and a Graph [smtp].
APP_KEYS = frozenset(
    {
        "kind",
        "tenant_id",
        "client_id",
        "certificate_file",
        *SECRET_KEYS,
        *KEY_KEYS,
        "user",
        "authority_host",
        "graph_url",
        "ca_file",
        "timeout",
    }
)
MAILBOX_KEYS = APP_KEYS | {
    "name",
    "folder",
    "after",
    "processed_folder",
    "filtered_folder",
    "review_folder",
    "errors_folder",
    "category",
    "poll_seconds",
    "batch",
    "notify_url",
    "notify_listen",
}
SMTP_KEYS = APP_KEYS | {"mailbox"}
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DOMAIN = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def is_graph(item: object) -> bool:
    """A [[mailbox]] or [smtp] table that names Graph (`kind = "graph"`)."""
    return isinstance(item, dict) and item.get("kind") == "graph"


def parse_mailboxes(path: Path | str, raw: object, taken: set[str]) -> tuple[GraphMailbox, ...]:
    """The `kind = "graph"` tables of [[mailbox]]; `taken` holds the IMAP mailboxes' names."""
    out: list[GraphMailbox] = []
    for n, item in enumerate(raw if isinstance(raw, list) else []):
        if not is_graph(item):
            continue
        mb = parse_mailbox(path, f"mailbox[{n}]", item)
        if mb.name in taken:
            raise ConfigError(
                path,
                f"mailbox[{n}].name",
                f"{mb.name!r} is used twice",
                "give each mailbox its own name",
            )
        taken.add(mb.name)
        out.append(mb)
    return tuple(out)


def parse_mailbox(path: Path | str, key: str, t: dict) -> GraphMailbox:
    """One `[[mailbox]] kind = "graph"` table (`key` is "mailbox[N]")."""
    from triage.sources.graph import AFTER_MODES, PAGE_MAX, GraphMailbox

    _no_secret(path, key, t)
    fields.table(path, key, t, set(MAILBOX_KEYS))
    after = t.get("after", "move")
    if after not in AFTER_MODES:
        raise ConfigError(
            path, f"{key}.after", f"{after!r} is not known", f"use one of {list(AFTER_MODES)}"
        )
    notify_url = _url(
        path,
        key,
        t,
        "notify_url",
        None,
        'write notify_url = "https://triage.example.com/graph/notify" (reachable from Microsoft)',
        loopback_http=True,
    )
    listen = fields.text(path, key, t, "notify_listen") or None
    if listen is not None:  # read as the daemon's metrics_listen is, so the listener can bind it
        try:
            Listen.parse(listen, where="notify_listen", default_port=8025)
        except ListenError as exc:
            problem = exc.problem.removeprefix("notify_listen: ")
            raise ConfigError(path, f"{key}.notify_listen", problem, exc.fix) from None
    if (notify_url is None) != (listen is None):
        missing = "notify_listen" if listen is None else "notify_url"
        raise ConfigError(
            path,
            f"{key}.{missing}",
            "is missing: change notifications need both notify_url and notify_listen",
            f"add {missing}, or remove the other key to poll only",
        )
    return GraphMailbox(
        name=fields.text(path, key, t, "name", required=True),
        user=_user(path, key, t),
        credentials=credentials(path, key, t),
        folder=_folder(path, key, t, "folder", "inbox"),
        after=after,
        processed_folder=_folder(path, key, t, "processed_folder", "Triage/Processed"),
        filtered_folder=_folder(path, key, t, "filtered_folder", "Triage/Filtered"),
        errors_folder=_folder(path, key, t, "errors_folder", "Triage/Errors"),
        review_folder=_folder(path, key, t, "review_folder", "Triage/Review"),
        category=_folder(path, key, t, "category", "Triaged"),
        graph_url=_graph_url(path, key, t),
        poll_seconds=fields.number(path, key, t, "poll_seconds", 60.0),
        batch=fields.whole(path, key, t, "batch", 100, high=PAGE_MAX),
        timeout=fields.number(path, key, t, "timeout", 30.0),
        notify_url=notify_url,
        notify_listen=listen,
    )


def parse_smtp(path: Path | str, t: dict, mailboxes: tuple[GraphMailbox, ...]) -> GraphSending:
    """`[smtp] kind = "graph"`: send as a Graph mailbox named here, or one spelled out."""
    from triage.sinks.graph_mail import GraphSending

    _no_secret(path, "smtp", t)
    fields.table(path, "smtp", t, set(SMTP_KEYS))
    timeout = fields.number(path, "smtp", t, "timeout", 30.0)
    if "mailbox" in t:
        name = fields.text(path, "smtp", t, "mailbox", required=True)
        extra = sorted(set(t) - {"kind", "mailbox", "timeout"})
        if extra:
            raise ConfigError(
                path,
                f"smtp.{extra[0]}",
                "is taken from the mailbox named by smtp.mailbox",
                f"remove {extra[0]}, or remove mailbox and spell out user, tenant_id, client_id"
                " and the credential",
            )
        found = next((m for m in mailboxes if m.name == name), None)
        if found is None:
            raise ConfigError(
                path,
                "smtp.mailbox",
                f'{name!r} is not the name of a [[mailbox]] with kind = "graph"',
                f"use one of {[m.name for m in mailboxes]} or spell out user, tenant_id,"
                " client_id and the credential",
            )
        return GraphSending(found.user, found.credentials, found.graph_url, timeout)
    return GraphSending(
        _user(path, "smtp", t), credentials(path, "smtp", t), _graph_url(path, "smtp", t), timeout
    )


def credentials(path: Path | str, key: str, t: dict) -> Credentials:
    """The app: tenant, client id, and exactly one credential (a secret, or a certificate
    with its private key), each secret from a file, an environment variable or systemd."""
    from triage.sources.graph_auth import Credentials

    tenant = fields.text(path, key, t, "tenant_id", required=True)
    if not (_GUID.fullmatch(tenant) or _DOMAIN.fullmatch(tenant)):
        raise ConfigError(
            path,
            f"{key}.tenant_id",
            f"{tenant!r} is not a tenant id",
            "copy the Directory (tenant) ID from the app registration's Overview in Entra",
        )
    client = fields.text(path, key, t, "client_id", required=True)
    if not _GUID.fullmatch(client):
        raise ConfigError(
            path,
            f"{key}.client_id",
            f"{client!r} is not an application id",
            "copy the Application (client) ID from the app registration's Overview in Entra",
        )
    cert = fields.text(path, key, t, "certificate_file") or None
    secret = _secret(path, key, t, KEY_KEYS if cert else SECRET_KEYS)
    if cert is not None and any(k in t for k in SECRET_KEYS):
        raise ConfigError(
            path,
            f"{key}.{next(k for k in SECRET_KEYS if k in t)}",
            "a client secret and a certificate are both given",
            "keep one: the certificate (certificate_file and certificate_key_*) or the secret",
        )
    if cert is None and any(k in t for k in KEY_KEYS):
        raise ConfigError(
            path,
            f"{key}.certificate_file",
            "is missing: a certificate key is given without its certificate",
            'add certificate_file = "/etc/triage/graph-app.pem" (the public half)',
        )
    return Credentials(
        tenant,
        client,
        secret,
        certificate_file=fields.beside(path, cert) if cert else None,
        authority_host=_url(
            path,
            key,
            t,
            "authority_host",
            "https://login.microsoftonline.com",
            'write authority_host = "https://login.microsoftonline.com"',
        )
        or "https://login.microsoftonline.com",
        ca_file=fields.beside(path, fields.text(path, key, t, "ca_file"))
        if t.get("ca_file")
        else None,
        timeout=fields.number(path, key, t, "timeout", 30.0),
    )


def _no_secret(path: Path | str, key: str, t: dict) -> None:
    for name in ("client_secret", "certificate_key"):
        if name in t:
            raise ConfigError(
                path,
                f"{key}.{name}",
                "secrets are never written in the config file",
                f"use {name}_file, {name}_env or {name}_credential (systemd LoadCredential=)",
            )


def _secret(path: Path | str, key: str, t: dict, names: tuple[str, ...]) -> Secret:
    given = [k for k in names if k in t]
    what = "certificate key" if names is KEY_KEYS else "client secret"
    if not given:
        raise ConfigError(
            path,
            key,
            f"no {what} source",
            f'add {names[2]} = "name" (systemd LoadCredential=), {names[0]} = "/etc/triage/..."'
            f' or {names[1]} = "VAR"; the value itself is never written in this file',
        )
    if len(given) > 1:
        raise ConfigError(path, f"{key}.{given[1]}", f"more than one {what} source", "keep one")
    name = given[0]
    value = t[name]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            path, f"{key}.{name}", "must be a non-empty string", f'write {name} = "..."'
        )
    where = name.rpartition("_")[2]  # file | env | credential
    return Secret(where, fields.beside(path, value) if where == "file" else value.strip())


def _user(path: Path | str, key: str, t: dict) -> str:
    user = fields.text(path, key, t, "user", required=True)
    if not (_GUID.fullmatch(user) or fields.ADDRESS.fullmatch(user)):
        raise ConfigError(
            path,
            f"{key}.user",
            f"{user!r} is neither a mailbox address nor an object id",
            'write user = "support@contoso.com" (the mailbox\'s address; shared is fine)',
        )
    return user


def _graph_url(path: Path | str, key: str, t: dict) -> str:
    from triage.sources.graph_http import GRAPH_URL

    return (
        _url(path, key, t, "graph_url", GRAPH_URL, f'write graph_url = "{GRAPH_URL}"') or GRAPH_URL
    ).rstrip("/")


def _url(
    path: Path | str,
    key: str,
    t: dict,
    name: str,
    default: str | None,
    fix: str,
    loopback_http: bool = False,
) -> str | None:
    """An https:// URL (http:// only to a loopback address when `loopback_http`: Graph itself
    refuses it, a local stand-in does not)."""
    if name not in t:
        return default
    value = fields.text(path, key, t, name)
    parts = urlsplit(value)
    local = loopback_http and parts.scheme == "http" and parts.hostname in _LOOPBACK
    if (parts.scheme != "https" and not local) or not parts.hostname:
        raise ConfigError(path, f"{key}.{name}", f"{value!r} is not an https:// URL", fix)
    return value


def _folder(path: Path | str, key: str, t: dict, name: str, default: str) -> str:
    if name not in t:
        return default
    value = fields.text(path, key, t, name)
    if not value or not value.isprintable():
        raise ConfigError(
            path, f"{key}.{name}", f"{t[name]!r} is not a name", f'write {name} = "{default}"'
        )
    return value
