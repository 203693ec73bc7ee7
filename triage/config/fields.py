"""Typed readers for the values of one TOML table: each refuses a wrong value with a
ConfigError naming the file, the key ("mailbox[0].port") and what to write instead."""

from __future__ import annotations

import re
from pathlib import Path

from triage.errors import ConfigError

# A plain address: no display name, no comment, nothing a header could smuggle in.
ADDRESS = re.compile(r"[^@\s<>()\[\],;:\\\"]+@[A-Za-z0-9.-]+")


def table(path: Path | str, key: str, raw: object, allowed: set[str]) -> dict:
    """`raw` as a table of only `allowed` keys; a password is never accepted in the file."""
    if not isinstance(raw, dict):
        raise ConfigError(path, key, "must be a table", f"write [{key}] and key = value lines")
    if "password" in raw:
        raise ConfigError(
            path,
            f"{key}.password",
            "passwords are never written in the config file",
            "use password_file, password_env or password_credential (systemd LoadCredential=)",
        )
    extra = set(raw) - allowed
    if extra:
        raise ConfigError(
            path, f"{key}.{sorted(extra)[0]}", "is not a known key", f"use one of {sorted(allowed)}"
        )
    return raw


def beside(path: Path | str, value: str) -> str:
    """A file named in the config: relative to the config file, like every path in it (the
    daemon runs from /, `triage check` from wherever the operator stands)."""
    named = Path(value)
    return str(named if named.is_absolute() else Path(path).parent / named)


def text(path: Path | str, key: str, t: dict, name: str, required: bool = False) -> str:
    value = t.get(name, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise ConfigError(
            path,
            f"{key}.{name}",
            "is missing" if required else "must be a string",
            f'write {name} = "..."',
        )
    return value.strip()


def flag(path: Path | str, key: str, t: dict, name: str, default: bool) -> bool:
    value = t.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(
            path,
            f"{key}.{name}",
            f"{value!r} is not true or false",
            f"write {name} = {str(default).lower()}",
        )
    return value


def whole(
    path: Path | str, key: str, t: dict, name: str, default: int, high: int | None = None
) -> int:
    """A positive whole number, at most `high`."""
    value = t.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(
            path,
            f"{key}.{name}",
            f"{value!r} is not a positive whole number",
            f"write {name} = {default}",
        )
    in_range(path, f"{key}.{name}", value, 1, high, f"write {name} = {default}")
    return value


def number(
    path: Path | str,
    key: str,
    t: dict,
    name: str,
    default: float,
    high: float | None = None,
    low: float = 0,
) -> float:
    """A positive number (seconds, minutes), at least `low` and at most `high`."""
    value = t.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ConfigError(
            path,
            f"{key}.{name}",
            f"{value!r} is not a positive number",
            f"write {name} = {default:g}",
        )
    in_range(path, f"{key}.{name}", value, low, high, f"write {name} = {default:g}")
    return float(value)


def in_range(
    path: Path | str, key: str, value: float, low: float, high: float | None, fix: str
) -> None:
    if value < low or (high is not None and value > high):
        raise ConfigError(path, key, f"{value!r} is outside the range {low:g} to {high:g}", fix)


def port(path: Path | str, key: str, t: dict, default: int) -> int:
    value = t.get("port", default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ConfigError(
            path,
            f"{key}.port",
            f"{value!r} is outside the range 1 to 65535",
            f"write port = {default} (or the port the server listens on)",
        )
    return value


def address(
    path: Path | str, key: str, value: str, fix: str = 'write "someone@example.com"'
) -> str:
    """A plain address (someone@example.com), nothing around it."""
    if not ADDRESS.fullmatch(value):
        raise ConfigError(path, key, f"{value!r} is not a plain address", fix)
    return value
