"""`[[sink]]` tables: where tickets and alerts go, read into frozen values. Pure (no network).

Every sink has a `name`, a `kind` (webhook | connectwise | slack | teams | email), the
`events` it subscribes to and optional filters (`priorities`, `queues`, `vip`). Secrets are
never written in the config file: a webhook's signing secret, ConnectWise's keys and a chat
webhook's URL (Slack and Teams treat the URL itself as the credential) come from a file, an
environment variable or a systemd credential, like the mailboxes' passwords.

Every error names the file, the key and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from triage.config.endpoints import Secret
from triage.sinks.events import EVENT_TYPES, VIP_MODES, Subscription
from triage.sinks.values import (
    ATOM,
    SOURCES,
    SinkConfigError,
    beside,
    read_addresses,
    read_atom,
    read_bool,
    read_int,
    read_num,
    read_secret,
    read_str,
    read_strings,
    read_table,
    read_url,
    read_zone,
)

KINDS = ("webhook", "connectwise", "slack", "teams", "email")
# Deliveries per second each kind sends at most, unless `rate_limit` says otherwise: Slack
# documents one message per second per incoming webhook, Teams four per second.
RATE_LIMITS = {"webhook": 10.0, "connectwise": 5.0, "slack": 1.0, "teams": 4.0, "email": 1.0}
TIMEOUT = 15.0  # seconds for one request (Standard Webhooks: receivers get 15 to 30 s)
MAX_ATTEMPTS = 10
NOTE_TYPES = ("discussion", "internal")
# a service ticket, then its notes (a message, an internal note, a change of state)
CONNECTWISE_EVENTS = (
    "ticket.created",
    "ticket.appended",
    "ticket.noted",
    "ticket.status_changed",
)
CODEBASE = "v4_6_release"
API_VERSION = "2022.1"

_COMMON = {
    "name",
    "kind",
    "events",
    "priorities",
    "queues",
    "vip",
    "timeout",
    "rate_limit",
    "max_attempts",
    "zone",
    "ca_file",
    "allow_insecure",
}
_KEYS = {
    "webhook": _COMMON | {"url"} | {f"secret_{s}" for s in SOURCES},
    "slack": _COMMON | {f"url_{s}" for s in SOURCES},
    "teams": _COMMON | {f"url_{s}" for s in SOURCES},
    "connectwise": _COMMON
    | {
        "site",
        "codebase",
        "company_id",
        "public_key",
        "client_id",
        "api_version",
        "board",
        "status",
        "priority_map",
        "company_map",
        "default_company",
        "note_type",
    }
    | {f"public_key_{s}" for s in SOURCES}
    | {f"private_key_{s}" for s in SOURCES},
    "email": _COMMON - {"ca_file", "allow_insecure", "timeout"} | {"to"},
}


def sink_keys() -> frozenset[str]:
    """Every key a `[[sink]]` table of some kind may hold (the documentation test walks it)."""
    return frozenset().union(*_KEYS.values())


# Keys that would put a secret in the file, and where it goes instead.
_INLINE_SECRETS = {
    "secret": "secret_file, secret_env or secret_credential",
    "private_key": "private_key_file, private_key_env or private_key_credential",
    "password": "a *_file, *_env or *_credential key",
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_VERSION = re.compile(r"\d{4}\.\d{1,2}")


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    url: str
    secret: Secret  # holds `whsec_<base64>`


@dataclass(frozen=True, slots=True)
class ChatSettings:
    url: Secret  # the incoming webhook's URL: whoever has it can post


@dataclass(frozen=True, slots=True)
class ConnectWiseSettings:
    api: str  # https://site/codebase/apis/3.0
    company_id: str
    public_key: str | Secret  # not a secret by itself; may be kept beside the private key
    private_key: Secret
    client_id: str
    api_version: str
    board: int
    status: int | None
    priorities: Mapping[str, int]  # our priority label -> the board's priority id
    companies: Mapping[str, str]  # a contact's company -> ConnectWise company identifier
    default_company: str
    note_type: str  # discussion | internal


@dataclass(frozen=True, slots=True)
class EmailSettings:
    to: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SinkConfig:
    name: str
    kind: str
    subscription: Subscription
    settings: WebhookSettings | ChatSettings | ConnectWiseSettings | EmailSettings
    timeout: float = TIMEOUT
    rate_limit: float = 10.0  # deliveries per second, at most
    max_attempts: int = MAX_ATTEMPTS
    zone: str = "UTC"  # chat and mail show times in this zone
    ca_file: str | None = None
    source: str = field(default="", compare=False)  # file and table, for messages


def parse_sinks(path: Path | str, raw: object) -> tuple[SinkConfig, ...]:
    """The `[[sink]]` array of tables from a parsed TOML document (`raw` = doc.get("sink"))."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SinkConfigError(
            path, "sink", "must be an array of tables", 'write [[sink]] then name = "..."'
        )
    seen: set[str] = set()
    out = []
    for n, table in enumerate(raw):
        sink = parse_sink(path, f"sink[{n}]", table)
        if sink.name in seen:
            raise SinkConfigError(
                path,
                f"sink[{n}].name",
                f"{sink.name!r} is used twice",
                "give each sink its own name (the outbox keeps rows per sink name)",
            )
        seen.add(sink.name)
        out.append(sink)
    return tuple(out)


def parse_sink(path: Path | str, key: str, table: object) -> SinkConfig:
    if not isinstance(table, dict):
        raise SinkConfigError(path, key, "must be a table", 'write [[sink]] then name = "..."')
    kind = table.get("kind")
    if kind not in KINDS:
        raise SinkConfigError(
            path, f"{key}.kind", f"{kind!r} is not a sink kind", f"use one of {list(KINDS)}"
        )
    for bad, where in _INLINE_SECRETS.items():
        if bad in table:
            raise SinkConfigError(
                path,
                f"{key}.{bad}",
                "secrets are never written in the config file",
                f"use {where} (systemd LoadCredential=)",
            )
    if kind in ("slack", "teams") and "url" in table:
        raise SinkConfigError(
            path,
            f"{key}.url",
            f"a {kind} incoming webhook's URL is its credential and is never written in the config file",
            "put the URL in a file and write url_file = ..., or use url_env or url_credential",
        )
    extra = set(table) - _KEYS[kind]
    if extra:
        raise SinkConfigError(
            path,
            f"{key}.{sorted(extra)[0]}",
            f"is not a key of a {kind} sink",
            f"use one of {sorted(_KEYS[kind])}",
        )
    name = read_str(path, key, table, "name", required=True)
    if not _NAME.fullmatch(name):
        raise SinkConfigError(
            path,
            f"{key}.name",
            f"{name!r} is not a sink name (letters, digits, _ and -, up to 64)",
            'write name = "oncall-slack"',
        )
    allow_insecure = read_bool(path, key, table, "allow_insecure", False)
    if kind == "webhook":
        settings: WebhookSettings | ChatSettings | ConnectWiseSettings | EmailSettings = (
            WebhookSettings(
                read_url(path, key, table, "url", allow_insecure),
                read_secret(path, key, table, "secret", required=True),
            )
        )
    elif kind in ("slack", "teams"):
        settings = ChatSettings(read_secret(path, key, table, "url", required=True))
    elif kind == "connectwise":
        settings = _connectwise(path, key, table, allow_insecure)
    else:
        settings = EmailSettings(read_addresses(path, key, table))
    return SinkConfig(
        name=name,
        kind=kind,
        subscription=_subscription(path, key, table),
        settings=settings,
        timeout=read_num(path, key, table, "timeout", TIMEOUT, high=300.0),
        rate_limit=read_num(path, key, table, "rate_limit", RATE_LIMITS[kind], high=1000.0),
        max_attempts=read_int(path, key, table, "max_attempts", MAX_ATTEMPTS, high=100),
        zone=read_zone(path, key, table),
        ca_file=beside(path, read_str(path, key, table, "ca_file"))
        if table.get("ca_file")
        else None,
        source=f"{path} [{key}]",
    )


def _subscription(path: Path | str, key: str, t: dict) -> Subscription:
    events = read_strings(path, key, t, "events", required=True)
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        raise SinkConfigError(
            path,
            f"{key}.events",
            f"{unknown[0]!r} is not an event",
            f"use some of {list(EVENT_TYPES)}",
        )
    if t.get("kind") == "connectwise":
        others = [e for e in events if e not in CONNECTWISE_EVENTS]
        if others:
            raise SinkConfigError(
                path,
                f"{key}.events",
                f"a connectwise sink does nothing with {others[0]!r}",
                f"use some of {list(CONNECTWISE_EVENTS)} (alerts go to a chat or email sink)",
            )
    vip = t.get("vip", "any")
    if vip not in VIP_MODES:
        raise SinkConfigError(
            path,
            f"{key}.vip",
            f"{vip!r} is not known",
            'write vip = "only" (VIP tickets only), "also" (VIP tickets whatever their priority) or "any"',
        )
    return Subscription(
        frozenset(events),
        frozenset(read_strings(path, key, t, "priorities")),
        frozenset(read_strings(path, key, t, "queues")),
        vip,
        done_states=t.get("kind") not in ("slack", "teams"),
    )


def _connectwise(path: Path | str, key: str, t: dict, allow_insecure: bool) -> ConnectWiseSettings:
    site = read_str(path, key, t, "site", required=True)
    base = site if "://" in site else f"https://{site}"
    base = read_url(path, key, {"site": base}, "site", allow_insecure).rstrip("/")
    codebase = read_str(path, key, t, "codebase") or CODEBASE
    if not ATOM.fullmatch(codebase):
        raise SinkConfigError(
            path,
            f"{key}.codebase",
            f"{codebase!r} is not a codebase",
            f'write codebase = "{CODEBASE}"',
        )
    version = read_str(path, key, t, "api_version") or API_VERSION
    if not _VERSION.fullmatch(version):
        raise SinkConfigError(
            path,
            f"{key}.api_version",
            f"{version!r} is not an API version (YEAR.N)",
            f'write api_version = "{API_VERSION}"',
        )
    if "public_key" in t:
        if any(f"public_key_{s}" in t for s in SOURCES):
            raise SinkConfigError(
                path, f"{key}.public_key", "more than one public key source", "keep exactly one"
            )
        public: str | Secret = read_str(path, key, t, "public_key", required=True)
    else:
        public = read_secret(path, key, t, "public_key", required=True)
    priorities = read_table(path, key, t, "priority_map", int)
    companies = read_table(path, key, t, "company_map", str)
    note_type = t.get("note_type", "discussion")
    if note_type not in NOTE_TYPES:
        raise SinkConfigError(
            path,
            f"{key}.note_type",
            f"{note_type!r} is not known",
            f"use one of {list(NOTE_TYPES)}",
        )
    status = t.get("status")
    if status is not None:
        status = read_int(path, key, t, "status", 1)
    return ConnectWiseSettings(
        api=f"{base}/{codebase}/apis/3.0",
        company_id=read_atom(path, key, t, "company_id"),
        public_key=public,
        private_key=read_secret(path, key, t, "private_key", required=True),
        client_id=read_str(path, key, t, "client_id", required=True),
        api_version=version,
        board=read_int(path, key, t, "board", 1, required=True),
        status=status,
        priorities=MappingProxyType(dict(priorities)),
        companies=MappingProxyType({k.casefold(): v for k, v in companies.items()}),
        default_company=read_str(path, key, t, "default_company", required=True),
        note_type=note_type,
    )
