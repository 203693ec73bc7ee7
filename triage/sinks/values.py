"""Readers of one value of a `[[sink]]` table: each checks its type and range and raises
`SinkConfigError` naming the file, the key and the fix. Pure (a zone name is checked against
the installed tz database)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from triage.config.endpoints import Secret
from triage.errors import ConfigError

SOURCES = ("file", "env", "credential")
_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\\\"]+@[A-Za-z0-9.-]+")
ATOM = re.compile(r"[A-Za-z0-9_.+-]{1,64}")


class SinkConfigError(ConfigError):
    """A `[[sink]]` table that cannot be used: names the file, the key and the fix."""

    def __init__(self, path: Path | str, key: str, problem: str, fix: str) -> None:
        super().__init__(path, key, problem, fix)
        self.path = str(path)


def read_str(path: Path | str, key: str, t: dict, name: str, required: bool = False) -> str:
    value = t.get(name, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise SinkConfigError(
            path,
            f"{key}.{name}",
            "is missing" if required and name not in t else "must be a non-empty string",
            f'write {name} = "..."',
        )
    return value.strip()


def read_atom(path: Path | str, key: str, t: dict, name: str) -> str:
    value = read_str(path, key, t, name, required=True)
    if not ATOM.fullmatch(value):
        raise SinkConfigError(
            path,
            f"{key}.{name}",
            f"{value!r} has characters a {name} cannot have",
            f"write {name} as it is shown in ConnectWise (letters, digits, _.+-)",
        )
    return value


def read_bool(path: Path | str, key: str, t: dict, name: str, default: bool) -> bool:
    value = t.get(name, default)
    if not isinstance(value, bool):
        raise SinkConfigError(
            path,
            f"{key}.{name}",
            f"{value!r} is not true or false",
            f"write {name} = {str(default).lower()}",
        )
    return value


def read_num(path: Path | str, key: str, t: dict, name: str, default: float, high: float) -> float:
    value = t.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= high:
        raise SinkConfigError(
            path,
            f"{key}.{name}",
            f"{value!r} is not a number above 0 and at most {high:g}",
            f"write {name} = {default:g}",
        )
    return float(value)


def read_int(
    path: Path | str,
    key: str,
    t: dict,
    name: str,
    default: int,
    high: int = 2**31 - 1,
    required: bool = False,
) -> int:
    if required and name not in t:
        raise SinkConfigError(path, f"{key}.{name}", "is missing", f"write {name} = <id>")
    value = t.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= high:
        raise SinkConfigError(
            path,
            f"{key}.{name}",
            f"{value!r} is not a whole number from 1 to {high}",
            f"write {name} = {default}",
        )
    return value


def read_strings(
    path: Path | str, key: str, t: dict, name: str, required: bool = False
) -> list[str]:
    value = t.get(name, [])
    if (
        not isinstance(value, list)
        or not all(isinstance(v, str) and v.strip() for v in value)
        or (required and not value)
    ):
        raise SinkConfigError(
            path,
            f"{key}.{name}",
            "is missing" if required and name not in t else "must be a list of strings",
            f'write {name} = ["..."]',
        )
    return [v.strip() for v in value]


def read_table(path: Path | str, key: str, t: dict, name: str, kind: type) -> dict:
    value = t.get(name, {})
    example = "{ P1 = 8, P2 = 7 }" if kind is int else '{ "Acme Corp" = "AcmeCorp" }'
    if not isinstance(value, dict):
        raise SinkConfigError(path, f"{key}.{name}", "must be a table", f"write {name} = {example}")
    for k, v in value.items():
        good = (
            (isinstance(v, int) and not isinstance(v, bool) and v > 0)
            if kind is int
            else (isinstance(v, str) and v.strip() != "")
        )
        if not good:
            raise SinkConfigError(
                path,
                f"{key}.{name}.{k}",
                f"{v!r} is not a {'positive id' if kind is int else 'company identifier'}",
                f"write {name} = {example}",
            )
    return value


def read_secret(path: Path | str, key: str, t: dict, stem: str, required: bool) -> Secret:
    given = [(f"{stem}_{s}", s) for s in SOURCES if f"{stem}_{s}" in t]
    if len(given) > 1:
        raise SinkConfigError(
            path, f"{key}.{given[1][0]}", f"more than one {stem} source", "keep exactly one"
        )
    if not given:
        raise SinkConfigError(
            path,
            key,
            f"no {stem} source",
            f'add {stem}_file = "/etc/triage/{stem}", {stem}_env = "VAR" or {stem}_credential = "name"',
        )
    name, where = given[0]
    value = t[name]
    if not isinstance(value, str) or not value.strip():
        raise SinkConfigError(
            path, f"{key}.{name}", "must be a non-empty string", f'write {name} = "..."'
        )
    value = value.strip()
    return Secret(where, beside(path, value) if where == "file" else value)


def read_url(path: Path | str, key: str, t: dict, name: str, allow_insecure: bool) -> str:
    value = read_str(path, key, t, name, required=True)
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise SinkConfigError(
            path,
            f"{key}.{name}",
            f"{value!r} is not an http(s) URL",
            f'write {name} = "https://..."',
        )
    if parts.username or parts.password:
        raise SinkConfigError(
            path,
            f"{key}.{name}",
            "the URL carries a user name or password",
            "remove it: secrets are never written in the config file",
        )
    if parts.scheme == "http" and not allow_insecure:
        raise SinkConfigError(
            path,
            f"{key}.{name}",
            "http:// sends tickets in clear text",
            "use https://, or add allow_insecure = true for a receiver on this host",
        )
    return value


def read_addresses(path: Path | str, key: str, t: dict) -> tuple[str, ...]:
    value = t.get("to")
    values = [value] if isinstance(value, str) else value
    if (
        not isinstance(values, list)
        or not values
        or not all(isinstance(v, str) and _ADDRESS.fullmatch(v.strip()) for v in values)
    ):
        raise SinkConfigError(
            path,
            f"{key}.to",
            f"{value!r} is not a list of plain addresses",
            'write to = ["oncall@example.com"]',
        )
    return tuple(v.strip() for v in values)


def read_zone(path: Path | str, key: str, t: dict) -> str:
    zone = read_str(path, key, t, "zone") or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SinkConfigError(
            path,
            f"{key}.zone",
            f"{zone!r} is not a time zone",
            'write zone = "Europe/Berlin" (an IANA name)',
        ) from None
    return zone


def beside(path: Path | str, value: str) -> str:
    """A file named in the config is relative to the config file, like every path in it."""
    named = Path(value)
    return str(named if named.is_absolute() else Path(path).parent / named)
