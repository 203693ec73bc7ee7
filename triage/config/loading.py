"""Reading a TOML configuration file into a Config; every error names the file, the key
and the fix, and relative paths in the file are relative to it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from triage.config import endpoints, fields, graph, sender, storage
from triage.config.values import Config, Queue
from triage.errors import ConfigError

SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "identity": {
        "domains": list,
        "support_address": str,
        "display_name": str,
        "ticket_prefix": str,
        "agents": list,
        "authserv_ids": list,
    },
    "queue": {},  # these four are checked by _queues and triage.config.endpoints
    "mailbox": {},
    "smtp": {},
    "daemon": {},
    "rules": {"dir": str},
    "store": {
        "db": str,
        "url": str,  # PostgreSQL instead of the file (triage/config/storage.py)
        "files": str,  # with url: the folder of attachments and kept mail
        "password_file": str,
        "password_env": str,
        "password_credential": str,
    },
    "sla": {"policy": str, "plan": str, "timezone": str},
    "contacts": {
        "unknown": str,
        "unknown_ceiling": str,
        "fuzzy_threshold": (int, float),
        "file": str,
        "vip_raise": int,
    },
    "replies": {
        "never_reply": list,
        "bounce_days": int,
        "max_per_day": int,
        "hold_notice": bool,
        "signature": str,
        "emergency_phone": str,
    },
    "limits": {"max_bytes": int},
    "tickets": {"reopen_days": int},
}


def load_config(path: Path | None) -> Config:
    """Read `path` (None: defaults). Relative paths in the file are relative to it."""
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            path, "-", "the file does not exist", "give the path of an existing file"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "-", f"not valid TOML ({exc})", "correct the syntax") from None
    _check_schema(
        path, {k: v for k, v in data.items() if k not in TABLES_ELSEWHERE and k != "sink"}
    )
    # imported here: triage.sinks.config reads its secrets' types from this package
    from triage.sinks.config import parse_sinks

    sinks = parse_sinks(path, data.get("sink"))
    queues = _queues(path, data.get("queue", []))
    mailboxes = endpoints.parse_mailboxes(path, data.get("mailbox", []))
    smtp = endpoints.parse_smtp(path, data.get("smtp"))
    graph_mailboxes: tuple = ()
    graph_sending = None
    if any(map(graph.is_graph, data.get("mailbox", []))) or graph.is_graph(data.get("smtp")):
        graph_mailboxes = graph.parse_mailboxes(
            path, data.get("mailbox", []), {m.name for m in mailboxes}
        )
        if graph.is_graph(data.get("smtp")):
            graph_sending = graph.parse_smtp(path, data["smtp"], graph_mailboxes)
    daemon = endpoints.parse_daemon(path, data.get("daemon"))
    base = path.parent

    def get(section: str, key: str, default: object) -> object:
        return data.get(section, {}).get(key, default)

    def rel(value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else base / p

    defaults = Config()
    rules_dir = rel(str(get("rules", "dir", ""))) if get("rules", "dir", "") else defaults.rules_dir
    if not (rules_dir / "filters.toml").is_file():
        raise ConfigError(
            path,
            "rules.dir",
            f"{rules_dir} holds no filters.toml",
            "point dir at a folder laid out like the shipped rules/",
        )
    unknown = str(get("contacts", "unknown", "ticket"))
    if unknown not in ("ticket", "hold", "ignore"):
        raise ConfigError(
            path,
            "contacts.unknown",
            f"{unknown!r} is not a policy",
            'use "ticket", "hold" or "ignore"',
        )
    tz = str(get("sla", "timezone", "UTC"))
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            path,
            "sla.timezone",
            f"{tz!r} is not a known time zone",
            'use an IANA name such as "Europe/Berlin"',
        ) from None
    domains = get("identity", "domains", None)
    if domains is not None and not all(isinstance(d, str) and d for d in domains):
        raise ConfigError(
            path,
            "identity.domains",
            "must be a list of domain names",
            'write domains = ["example.com"]',
        )
    own = frozenset(d.lower() for d in domains) if domains else defaults.own_domains
    contacts_file = get("contacts", "file", None)
    support = str(get("identity", "support_address", f"support@{sorted(own)[0]}")).strip().lower()
    fields.address(path, "identity.support_address", support)
    agents = [str(a).strip().lower() for a in get("identity", "agents", [])]
    for agent in agents:
        fields.address(path, "identity.agents", agent)
    prefix = str(get("identity", "ticket_prefix", defaults.ticket_prefix))
    if not _PREFIX.fullmatch(prefix):
        raise ConfigError(
            path,
            "identity.ticket_prefix",
            f"{prefix!r} is not 1 to 16 letters, digits, '.', '_' or '-'",
            'write ticket_prefix = "T-"',
        )
    db = rel(str(get("store", "db", "triage.db")))
    if db.is_dir() or not str(get("store", "db", "triage.db")).strip():
        raise ConfigError(
            path, "store.db", f"{db} is a folder, not a database file", 'write db = "triage.db"'
        )
    database = storage.parse(path, data.get("store", {}))
    never_reply = get("replies", "never_reply", defaults.never_reply)
    if not all(isinstance(x, str) and x.strip() for x in never_reply):
        raise ConfigError(
            path,
            "replies.never_reply",
            "must be a list of address beginnings",
            'write never_reply = ["mailer-daemon", "noreply"]',
        )
    return Config(
        path=str(path),
        rules_dir=rules_dir,
        db=db,
        database=database,
        own_domains=own,
        support_address=support,
        display_name=sender.display_name(path, get("identity", "display_name", "")),
        signature=sender.signature(path, get("replies", "signature", "")),
        emergency_phone=sender.emergency_phone(path, get("replies", "emergency_phone", "")),
        ticket_prefix=prefix,
        policy=str(get("sla", "policy", defaults.policy)),
        plan=str(get("sla", "plan", "")) or None,
        timezone=tz,
        unknown_senders=unknown,
        unknown_ceiling=str(get("contacts", "unknown_ceiling", "")).strip() or None,
        fuzzy_threshold=float(
            _ranged(path, "contacts.fuzzy_threshold", get, defaults.fuzzy_threshold, 50, 100, "92")
        ),
        never_reply=tuple(x.strip().lower() for x in never_reply),
        bounce_days=int(_ranged(path, "replies.bounce_days", get, defaults.bounce_days, 0, 3650)),
        max_acks_per_day=int(
            _ranged(path, "replies.max_per_day", get, defaults.max_acks_per_day, 1, 1000)
        ),
        hold_notice=bool(get("replies", "hold_notice", defaults.hold_notice)),
        reopen_days=int(
            _ranged(path, "tickets.reopen_days", get, defaults.reopen_days, 0, 3650, "14")
        ),
        max_bytes=int(
            _ranged(path, "limits.max_bytes", get, defaults.max_bytes, 1024, MAX_BYTES_LIMIT)
        ),
        contacts_file=rel(str(contacts_file)) if contacts_file else None,
        vip_raise=_vip_raise(path, get("contacts", "vip_raise", 1)),
        agents=frozenset(agents),
        authserv_ids=_authserv_ids(path, get("identity", "authserv_ids", [])),
        queues=queues,
        mailboxes=mailboxes,
        smtp=smtp,
        graph_mailboxes=graph_mailboxes,
        graph_sending=graph_sending,
        daemon=daemon,
        sinks=sinks,
    )


TABLES_ELSEWHERE = ("queue", "mailbox", "smtp", "daemon")  # read by _queues and endpoints
QUEUE_KEYS = ("name", "address", "plan", "priority")


def known_keys() -> frozenset[str]:
    """Every key a configuration file may hold, as "section.key" ("mailbox.port")."""
    keys = {f"{section}.{key}" for section, names in SCHEMA.items() for key in names}
    for section, names in (
        ("queue", QUEUE_KEYS),
        ("mailbox", endpoints.MAILBOX_KEYS | graph.MAILBOX_KEYS),
        ("smtp", endpoints.SMTP_KEYS | graph.SMTP_KEYS),
        ("daemon", endpoints.DAEMON_KEYS),
    ):
        keys |= {f"{section}.{key}" for key in names}
    return frozenset(keys)


MAX_BYTES_LIMIT = 1024**3  # a message is held in memory while it is read: 1 GiB at most
_PREFIX = re.compile(r"[A-Za-z0-9._-]{1,16}")


def _ranged(
    path: Path, key: str, get, default: float, low: float, high: float, example: str = ""
) -> float:
    """The number at `key` ("section.name"), refused outside [low, high] with the range named."""
    section, name = key.split(".")
    value = get(section, name, default)
    if not low <= value <= high:
        raise ConfigError(
            path,
            key,
            f"{value!r} is outside the range {low:g} to {high:g}",
            f"write {name} = {example or default}",
        )
    return value


_AUTHSERV_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _authserv_ids(path: Path, value: object) -> frozenset[str]:
    """The names our own mail servers write first in their Authentication-Results headers."""
    ids = value if isinstance(value, list) else [value]
    for item in ids:
        if not isinstance(item, str) or not _AUTHSERV_ID.fullmatch(item):
            raise ConfigError(
                path,
                "identity.authserv_ids",
                f"{item!r} is not an authserv-id (a host name such as mx.msp.example)",
                'write authserv_ids = ["mx.msp.example"], the name your receiving server writes '
                "first in its Authentication-Results header",
            )
    return frozenset(i.lower() for i in ids)


def _vip_raise(path: Path, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 3:
        raise ConfigError(
            path, "contacts.vip_raise", f"{value!r} is not 0, 1, 2 or 3", "write vip_raise = 1"
        )
    return value


def _queues(path: Path, raw: object) -> tuple[Queue, ...]:
    """[[queue]] tables: name, address, optional plan and priority."""
    if not isinstance(raw, list):
        raise ConfigError(
            path, "queue", "must be an array of tables", 'write [[queue]] then name = "billing"'
        )
    out: list[Queue] = []
    for n, table in enumerate(raw):
        key = f"queue[{n}]"
        if not isinstance(table, dict):
            raise ConfigError(path, key, "must be a table", "write [[queue]] on its own line")
        extra = set(table) - set(QUEUE_KEYS)
        if extra:
            raise ConfigError(
                path,
                f"{key}.{sorted(extra)[0]}",
                "is not a known key",
                "use name, address, plan, priority",
            )
        for field_name in ("name", "address"):
            if not isinstance(table.get(field_name), str) or not table[field_name].strip():
                raise ConfigError(
                    path, f"{key}.{field_name}", "is missing", f'add {field_name} = "..."'
                )
        if "@" not in table["address"]:
            raise ConfigError(
                path,
                f"{key}.address",
                f"{table['address']!r} is not an address",
                'write address = "billing@msp.example"',
            )
        for field_name in ("plan", "priority"):
            if field_name in table and not isinstance(table[field_name], str):
                raise ConfigError(
                    path, f"{key}.{field_name}", "must be a string", f'write {field_name} = "..."'
                )
        out.append(
            Queue(
                table["name"].strip(),
                table["address"].strip().lower(),
                table.get("plan"),
                table.get("priority"),
            )
        )
    return tuple(out)


def _check_schema(path: Path, data: dict) -> None:
    for section, values in data.items():
        if section not in SCHEMA:
            raise ConfigError(
                path, section, "is not a known section", f"use one of {sorted(SCHEMA)}"
            )
        if not isinstance(values, dict):
            raise ConfigError(
                path, section, "must be a table", f"write [{section}] on its own line"
            )
        for key, value in values.items():
            expected = SCHEMA[section].get(key)
            if expected is None:
                raise ConfigError(
                    path,
                    f"{section}.{key}",
                    "is not a known key",
                    f"use one of {sorted(SCHEMA[section])}",
                )
            if not isinstance(value, expected) or (
                isinstance(value, bool) and expected is not bool
            ):
                names = expected.__name__ if isinstance(expected, type) else "number"
                raise ConfigError(
                    path,
                    f"{section}.{key}",
                    f"must be a {names}, not {type(value).__name__}",
                    f"write {key} = <a {names}>",
                )
