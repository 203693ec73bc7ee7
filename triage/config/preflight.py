"""What `triage check` verifies without a network: the files and folders the config names.

Each finding names the file, the key and the fix. Errors make `triage check`
fail; warnings are things this shell cannot see (a variable the unit sets, a
credential systemd hands over) or that work but are unsafe. Secrets must not
be readable by everyone; what decides who triage trusts (rules, contacts, CA
certificates) must not be writable by everyone.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

from triage.config import Config
from triage.config.credentials import Secret, SecretError

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # error | warning
    where: str  # the file the problem is in or about
    key: str  # the config key that names it
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.where}: [{self.key}] {self.problem}; fix: {self.fix}"


def check(config: Config) -> list[Finding]:
    """Every finding for `config`, errors and warnings, in the order of the file."""
    out: list[Finding] = []
    out += _rules(config)
    out += _database(config)
    if config.contacts_file is not None:
        out += _contacts(config, config.contacts_file)
    for n, mb in enumerate(config.mailboxes):
        key = f"mailbox[{n}]"
        out += _secret(config, key, mb.secret, oauth=mb.oauth)
        if mb.ca_file:
            out += _ca_file(config, f"{key}.ca_file", Path(mb.ca_file))
    for n, mb in enumerate(config.graph_mailboxes):
        out += _graph_app(config, f"mailbox[{n}]", mb.credentials)
    if config.graph_sending is not None:
        out += _graph_app(config, "smtp", config.graph_sending.credentials)
    if config.smtp is not None:
        if config.smtp.secret is not None:
            out += _secret(config, "smtp", config.smtp.secret, oauth=False)
        if config.smtp.ca_file:
            out += _ca_file(config, "smtp.ca_file", Path(config.smtp.ca_file))
    for n, sink in enumerate(config.sinks):
        out += _sink(config, f"sink[{n}]", sink)
    return out


def _graph_app(config: Config, key: str, credentials) -> list[Finding]:
    """A Graph app's secret (or certificate key) readable, its certificate and CA files."""
    out = _secret(config, key, credentials.secret, oauth=False)
    if credentials.certificate_file:
        problem = _readable_file(Path(credentials.certificate_file))
        if problem:
            out.append(
                _finding(
                    ERROR,
                    config.path,
                    f"{key}.certificate_file",
                    f"{credentials.certificate_file}: {problem}",
                    "name the certificate (public PEM) uploaded to the app registration",
                )
            )
    if credentials.ca_file:
        out += _ca_file(config, f"{key}.ca_file", Path(credentials.ca_file))
    return out


def _sink(config: Config, key: str, sink) -> list[Finding]:
    """A sink's secrets read and checked as the drainer will use them, its CA file, and
    for an email sink the relay it sends through."""
    from triage.sinks import config as sink_config
    from triage.sinks.webhook import WebhookSecretError, parse_secrets

    found: list[Finding] = []
    settings = sink.settings
    if sink.kind == "email" and config.smtp is None and config.graph_sending is None:
        found.append(
            _finding(
                ERROR,
                config.path,
                key,
                f"email sink {sink.name!r} sends through [smtp], which is missing",
                "add an [smtp] table (host, port, tls, login), or remove the sink",
            )
        )
    secrets: list[tuple[str, Secret, object]] = []
    if isinstance(settings, sink_config.WebhookSettings):
        secrets.append(("secret", settings.secret, parse_secrets))
    elif isinstance(settings, sink_config.ChatSettings):
        secrets.append(("url", settings.url, None))
    elif isinstance(settings, sink_config.ConnectWiseSettings):
        secrets.append(("private_key", settings.private_key, None))
        if isinstance(settings.public_key, Secret):
            secrets.append(("public_key", settings.public_key, None))
    for name, secret, parse in secrets:
        where = f"{key}.{name}_{secret.where}"
        if secret.where == "credential" and not os.environ.get("CREDENTIALS_DIRECTORY"):
            found.append(
                _finding(
                    WARNING,
                    config.path,
                    where,
                    f"systemd hands credential {secret.value!r} over at start; not checked here",
                    f"LoadCredential={secret.value}:/etc/triage/{secret.value} in the unit",
                )
            )
            continue
        if secret.where == "env" and not os.environ.get(secret.value):
            found.append(
                _finding(
                    WARNING,
                    config.path,
                    where,
                    f"${secret.value} is not set here; the service must set it",
                    "Environment= or EnvironmentFile= in the unit (systemctl edit triage)",
                )
            )
            continue
        try:
            text = secret.reveal()
            if parse is not None:
                parse(text)
            elif not text:
                raise ValueError("it is empty")
        except (SecretError, WebhookSecretError, ValueError) as exc:
            fix = (
                "write whsec_ and the base64 of 32 random bytes in it (docs/sinks.md shows how)"
                if parse is not None
                else f"put the sink's {name.replace('_', ' ')} in it"
            )
            found.append(_finding(ERROR, secret.value, where, str(exc), fix))
            continue
        if secret.where == "file" and Path(secret.value).stat().st_mode & stat.S_IRWXO:
            found.append(
                _finding(
                    ERROR,
                    secret.value,
                    where,
                    "is open to every user of this machine",
                    f"chmod 0600 {shlex.quote(secret.value)} (or 0640 with the service's group)",
                )
            )
    if sink.ca_file:
        found += _ca_file(config, f"{key}.ca_file", Path(sink.ca_file))
    return found


def _finding(level: str, where: Path | str, key: str, problem: str, fix: str) -> Finding:
    return Finding(level, str(where), key, problem, fix)


def _world_writable(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IWOTH)


def _rules(config: Config) -> list[Finding]:
    """Anyone who can write the rules decides what is filtered and who is a VIP's equal."""
    found = []
    for path in [config.rules_dir, *sorted(config.rules_dir.rglob("*"))]:
        if _world_writable(path):  # a sticky folder too: anyone may add an sla/*.toml
            found.append(
                _finding(
                    ERROR,
                    path,
                    "rules.dir",
                    "is writable by every user of this machine",
                    f"chmod o-w {shlex.quote(str(path))}",
                )
            )
    return found


def _database(config: Config) -> list[Finding]:
    if config.database is not None:
        return _postgres(config)
    db = config.db
    if db.exists():
        if not db.is_file():
            return [_finding(ERROR, db, "store.db", "is not a file", "name a database file")]
        if db.stat().st_mode & stat.S_IROTH:
            return [
                _finding(
                    WARNING,
                    db,
                    "store.db",
                    "is readable by every user of this machine (it holds customers' mail)",
                    f"chmod 0600 {shlex.quote(str(db))}",
                )
            ]
        return []
    folder = db.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        return [
            _finding(
                ERROR,
                db,
                "store.db",
                f"cannot be created: {folder} is not a folder this user may write",
                "create the folder for the database, or point db elsewhere",
            )
        ]
    return []


def _postgres(config: Config) -> list[Finding]:
    """`[store] url`: psycopg is there and the password's source can be read; the server is
    not asked (check runs where the database may not be reachable, as the token command)."""
    database = config.database
    assert database is not None
    found = []
    if importlib.util.find_spec("psycopg") is None:
        found.append(
            _finding(
                ERROR,
                config.path,
                "store.url",
                "a PostgreSQL store needs psycopg, which is not installed",
                "pip install 'triage[postgres]' (psycopg 3), or use db for SQLite",
            )
        )
    if database.password is not None:
        found += _secret(config, "store", database.password, oauth=False)
    return found


def _contacts(config: Config, path: Path) -> list[Finding]:
    from triage.core import contact_rows as contacts_csv

    problem = _readable_file(path)
    if problem:
        return [_finding(ERROR, path, "contacts.file", problem, "give the path of the CSV file")]
    found = []
    if _world_writable(path):
        found.append(
            _finding(
                ERROR,
                path,
                "contacts.file",
                "is writable by every user of this machine (anyone could make themselves a VIP)",
                f"chmod o-w {shlex.quote(str(path))}",
            )
        )
    try:
        result = contacts_csv.parse(path.read_bytes(), str(path))
    except contacts_csv.CsvError as exc:
        found.append(_finding(ERROR, path, "contacts.file", exc.problem, exc.fix or "correct it"))
        return found
    for rejected in result.rejected:
        found.append(
            _finding(
                WARNING,
                path,
                "contacts.file",
                f"line {rejected.line} would be rejected: {rejected.reason}",
                "correct that line",
            )
        )
    return found


def _readable_file(path: Path) -> str | None:
    if not path.exists():
        return "does not exist"
    if not path.is_file():
        return "is not a file"
    if not os.access(path, os.R_OK):
        return "cannot be read by this user"
    return None


def _secret(config: Config, key: str, secret: Secret, oauth: bool) -> list[Finding]:
    if secret.where == "file":
        path = Path(secret.value)
        name = f"{key}.password_file"
        problem = _readable_file(path)
        if problem:
            return [
                _finding(ERROR, path, name, problem, "write the password in that file, mode 0600")
            ]
        found = []
        if path.stat().st_mode & stat.S_IRWXO:
            found.append(
                _finding(
                    ERROR,
                    path,
                    name,
                    f"is open to every user of this machine (mode {stat.filemode(path.stat().st_mode)})",
                    f"chmod 0600 {shlex.quote(str(path))} (or 0640 with the service's group)",
                )
            )
        if not path.read_text(encoding="utf-8", errors="replace").strip():
            found.append(_finding(ERROR, path, name, "is empty", "write the password in it"))
        return found
    if secret.where == "env":
        if os.environ.get(secret.value):
            return []
        return [
            _finding(
                WARNING,
                config.path,
                f"{key}.password_env",
                f"${secret.value} is not set here; the service must set it",
                "Environment= or EnvironmentFile= in the unit (systemctl edit triage)",
            )
        ]
    if secret.where == "credential":
        folder = os.environ.get("CREDENTIALS_DIRECTORY")
        if folder is None:
            return [
                _finding(
                    WARNING,
                    config.path,
                    f"{key}.password_credential",
                    f"systemd hands credential {secret.value!r} over at start; not checked here",
                    f"LoadCredential={secret.value}:/etc/triage/{secret.value} in the unit, file mode 0600",
                )
            ]
        problem = _readable_file(Path(folder) / secret.value)
        if problem:
            return [
                _finding(
                    ERROR,
                    Path(folder) / secret.value,
                    f"{key}.password_credential",
                    problem,
                    "name it in a LoadCredential= line of the unit",
                )
            ]
        return []
    # command: its program must be there; it is not run (it may need the network)
    words = shlex.split(secret.value) if secret.value.strip() else []
    program = words[0] if words else ""
    if not program or shutil.which(program) is None:
        return [
            _finding(
                ERROR,
                config.path,
                f"{key}.oauth_command",
                f"{program or '(nothing)'} is not an executable program",
                "give the full path of the token command, executable by the service",
            )
        ]
    return []


def _ca_file(config: Config, key: str, path: Path) -> list[Finding]:
    problem = _readable_file(path)
    if problem:
        return [_finding(ERROR, path, key, problem, "give the path of a PEM CA certificate")]
    found = []
    if _world_writable(path):
        found.append(
            _finding(
                ERROR,
                path,
                key,
                "is writable by every user of this machine (anyone could add a CA)",
                f"chmod o-w {shlex.quote(str(path))}",
            )
        )
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, ValueError) as exc:
        found.append(
            _finding(ERROR, path, key, f"holds no usable certificate ({exc})", "give a PEM file")
        )
    return found
