"""The servers triage talks to: mailboxes (IMAP), the SMTP relay, daemon settings.

Secrets are never written in the config file: a password comes from a file, an
environment variable or a systemd credential, and an OAuth token from a command.
Every error names the file, the key and the fix, like the rest of the config.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from triage.errors import ConfigError, RecordedError

TLS_MODES = ("tls", "starttls", "none")
AFTER_MODES = ("move", "flag", "delete")
IDLE_MAX = 29 * 60.0  # RFC 2177: a server may log out a client idle for 30 minutes
BATCH_MAX = 10_000
_ATOM = re.compile(r"\$?[A-Za-z0-9_.-]{1,64}")
_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\\\"]+@[A-Za-z0-9.-]+")


@dataclass(frozen=True, slots=True)
class Secret:
    """Where a password or token comes from; `reveal()` reads it when it is needed."""

    where: str  # file | env | credential | command
    value: str  # the path, variable, credential name or command line

    def reveal(self) -> str:
        """The secret itself; raises SecretError naming the source (never the secret)."""
        try:
            if self.where == "file":
                return Path(self.value).read_text(encoding="utf-8").strip()
            if self.where == "credential":
                folder = os.environ.get("CREDENTIALS_DIRECTORY")
                if not folder:
                    raise SecretError(
                        f"credential {self.value!r}: $CREDENTIALS_DIRECTORY is not set (LoadCredential= in the unit)"
                    )
                return (Path(folder) / self.value).read_text(encoding="utf-8").strip()
            if self.where == "env":
                found = os.environ.get(self.value)
                if not found:
                    raise SecretError(f"environment variable {self.value} is not set")
                return found
            done = subprocess.run(
                self.value, shell=True, capture_output=True, text=True, timeout=60
            )
            if done.returncode != 0 or not done.stdout.strip():
                raise SecretError(
                    f"token command exited {done.returncode} with no token: {self.shown}"
                )
            token = done.stdout.strip().splitlines()[-1].strip()
            if not token.isascii() or not token.isprintable() or " " in token:
                # an error message printed with exit status 0: never quoted, it may hold anything
                raise SecretError(
                    f"token command printed a last line that is not a token: {self.shown}"
                )
            return token
        except OSError as exc:
            raise SecretError(f"{self.where} {self.shown!r}: {exc.strerror or exc}") from None
        except subprocess.TimeoutExpired:
            raise SecretError(f"token command took over 60 s: {self.shown}") from None

    @property
    def shown(self) -> str:
        """The source as logs may show it: a command by its program only.

        Its arguments may carry a secret of their own (a client secret, a
        refresh token); the program is enough to find the configuration.
        """
        if self.where != "command":
            return self.value
        words = self.value.split()
        program = words[0] if words else ""
        return program + (" ..." if len(words) > 1 else "")

    def __str__(self) -> str:  # what logs may show
        return f"{self.where}:{self.shown}"

    def __repr__(self) -> str:
        return f"Secret({self})"


class SecretError(RecordedError, RuntimeError):
    pass


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


# What every server connection takes: where, how securely, who, and the password's source.
_ENDPOINT_KEYS = {
    "host",
    "port",
    "tls",
    "allow_insecure",
    "username",
    "password_file",
    "password_env",
    "password_credential",
    "ca_file",
    "timeout",
}
_MAILBOX_KEYS = _ENDPOINT_KEYS | {
    "name",
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
_SMTP_KEYS = _ENDPOINT_KEYS
_DAEMON_KEYS = {
    "message_timeout",
    "alert_after_failures",
    "stalled_minutes",
    "operator",
    "sla_check_seconds",
    "backoff_max_seconds",
    "outbox_seconds",
}


def parse_mailboxes(path: Path | str, raw: object) -> tuple[Mailbox, ...]:
    if not isinstance(raw, list):
        raise ConfigError(
            path, "mailbox", "must be an array of tables", "write [[mailbox]] then name = ..."
        )
    seen: set[str] = set()
    out = []
    for n, table in enumerate(raw):
        key = f"mailbox[{n}]"
        t = _table(path, key, table, _MAILBOX_KEYS)
        name = _str(path, key, t, "name", required=True)
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
            Secret("command", _str(path, key, t, "oauth_command"))
            if oauth
            else _password(path, key, t, required=True)
        )
        out.append(
            Mailbox(
                name=name,
                host=_str(path, key, t, "host", required=True),
                port=_port(path, key, t, 993 if tls == "tls" else 143),
                tls=tls,
                username=_str(path, key, t, "username", required=True),
                secret=secret,
                oauth=oauth,
                folder=_folder(path, key, t, "folder", "INBOX"),
                after=after,
                processed_folder=_folder(path, key, t, "processed_folder", "Triage/Processed"),
                filtered_folder=_folder(path, key, t, "filtered_folder", "Triage/Filtered"),
                errors_folder=_folder(path, key, t, "errors_folder", "Triage/Errors"),
                review_folder=_folder(path, key, t, "review_folder", "Triage/Review"),
                keyword=_keyword(path, key, t),
                ca_file=_beside(path, _str(path, key, t, "ca_file")) if t.get("ca_file") else None,
                poll_seconds=_num(path, key, t, "poll_seconds", 60.0),
                idle_seconds=_num(path, key, t, "idle_seconds", 25 * 60.0, high=IDLE_MAX),
                batch=_int(path, key, t, "batch", 100, high=BATCH_MAX),
                timeout=_num(path, key, t, "timeout", 30.0),
                use_idle=_bool(path, key, t, "use_idle", True),
            )
        )
    return tuple(out)


def _bool(path: Path | str, key: str, t: dict, name: str, default: bool) -> bool:
    value = t.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(
            path,
            f"{key}.{name}",
            f"{value!r} is not true or false",
            f"write {name} = {str(default).lower()}",
        )
    return value


def parse_smtp(path: Path | str, raw: object) -> Smtp | None:
    if raw is None:
        return None
    t = _table(path, "smtp", raw, _SMTP_KEYS)
    tls = _tls(path, "smtp", t)
    username = _str(path, "smtp", t, "username") or None
    return Smtp(
        host=_str(path, "smtp", t, "host", required=True),
        port=_port(path, "smtp", t, {"tls": 465, "starttls": 587, "none": 25}[tls]),
        tls=tls,
        username=username,
        secret=_password(path, "smtp", t, required=username is not None),
        ca_file=_beside(path, _str(path, "smtp", t, "ca_file")) if t.get("ca_file") else None,
        timeout=_num(path, "smtp", t, "timeout", 30.0),
    )


def parse_daemon(path: Path | str, raw: object) -> Daemon:
    t = _table(path, "daemon", raw or {}, _DAEMON_KEYS)
    return Daemon(
        message_timeout=_num(path, "daemon", t, "message_timeout", 30.0),
        alert_after_failures=_int(path, "daemon", t, "alert_after_failures", 5),
        stalled_minutes=_num(path, "daemon", t, "stalled_minutes", 15.0),
        operator=_operator(path, t),
        sla_check_seconds=_num(path, "daemon", t, "sla_check_seconds", 300.0),
        backoff_max_seconds=_num(path, "daemon", t, "backoff_max_seconds", 300.0),
        outbox_seconds=_num(path, "daemon", t, "outbox_seconds", 15.0),
    )


def _table(path: Path | str, key: str, raw: object, allowed: set[str]) -> dict:
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


def _password(path: Path | str, key: str, t: dict, required: bool) -> Secret | None:
    given = [(k, t[k]) for k in ("password_file", "password_env", "password_credential") if k in t]
    if len(given) > 1:
        raise ConfigError(
            path, f"{key}.{given[1][0]}", "more than one password source", "keep exactly one"
        )
    if not given:
        if required:
            raise ConfigError(
                path,
                key,
                "no password source",
                'add password_file = "/etc/triage/pw", password_env = "VAR" or password_credential = "name"',
            )
        return None
    k, value = given[0]
    if not isinstance(value, str) or not value:
        raise ConfigError(path, f"{key}.{k}", "must be a non-empty string", f'write {k} = "..."')
    if k == "password_file":
        value = _beside(path, value)
    return Secret(
        {"password_file": "file", "password_env": "env", "password_credential": "credential"}[k],
        value,
    )


def _beside(path: Path | str, value: str) -> str:
    """A file named in the config: relative to the config file, like every path in it (the
    daemon runs from /, `triage check` from wherever the operator stands)."""
    named = Path(value)
    return str(named if named.is_absolute() else Path(path).parent / named)


def _str(path: Path | str, key: str, t: dict, name: str, required: bool = False) -> str:
    value = t.get(name, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise ConfigError(
            path,
            f"{key}.{name}",
            "is missing" if required else "must be a string",
            f'write {name} = "..."',
        )
    return value.strip()


def _int(
    path: Path | str, key: str, t: dict, name: str, default: int, high: int | None = None
) -> int:
    value = t.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(
            path,
            f"{key}.{name}",
            f"{value!r} is not a positive whole number",
            f"write {name} = {default}",
        )
    _at_most(path, f"{key}.{name}", value, 1, high, f"write {name} = {default}")
    return value


def _num(
    path: Path | str, key: str, t: dict, name: str, default: float, high: float | None = None
) -> float:
    value = t.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ConfigError(
            path,
            f"{key}.{name}",
            f"{value!r} is not a positive number",
            f"write {name} = {default:g}",
        )
    _at_most(path, f"{key}.{name}", value, 0, high, f"write {name} = {default:g}")
    return float(value)


def _at_most(
    path: Path | str, key: str, value: float, low: float, high: float | None, fix: str
) -> None:
    if high is not None and value > high:
        raise ConfigError(path, key, f"{value!r} is outside the range {low:g} to {high:g}", fix)


def _port(path: Path | str, key: str, t: dict, default: int) -> int:
    value = t.get("port", default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ConfigError(
            path,
            f"{key}.port",
            f"{value!r} is outside the range 1 to 65535",
            f"write port = {default} (or the port the server listens on)",
        )
    return value


def _folder(path: Path | str, key: str, t: dict, name: str, default: str) -> str:
    if name not in t:
        return default
    value = _str(path, key, t, name)
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
    value = _str(path, key, t, "keyword") or "$Triaged"
    if not _ATOM.fullmatch(value):
        raise ConfigError(
            path,
            f"{key}.keyword",
            f"{value!r} is not an IMAP keyword (letters, digits and $_.-, no spaces, no backslash)",
            'write keyword = "$Triaged"',
        )
    return value


def _operator(path: Path | str, t: dict) -> str | None:
    value = _str(path, "daemon", t, "operator") or None
    if value is not None and not _ADDRESS.fullmatch(value):
        raise ConfigError(
            path,
            "daemon.operator",
            f"{value!r} is not a plain address",
            'write operator = "ops@example.com"',
        )
    return value
