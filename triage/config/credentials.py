"""Where a password or token comes from, never the secret itself.

Secrets are never written in the config file: a password comes from a file, an
environment variable or a systemd credential, and an OAuth token from a command. The
secret is read when it is needed (`Secret.reveal`), and what logs may show of its
source (`str(secret)`) never holds it. (Named for its concern; `secrets` is the
standard library's.)
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from triage.config import fields
from triage.errors import ConfigError, RecordedError

PASSWORD_KEYS = ("password_file", "password_env", "password_credential")


class SecretError(RecordedError, RuntimeError):
    """A secret that cannot be read now; names its source, never the secret."""


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


def password(path: Path | str, key: str, t: dict, required: bool) -> Secret | None:
    """The password source of table `key`: exactly one of PASSWORD_KEYS (None when optional
    and absent). A password file is named relative to the config file."""
    given = [(k, t[k]) for k in PASSWORD_KEYS if k in t]
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
        value = fields.beside(path, value)
    return Secret(
        {"password_file": "file", "password_env": "env", "password_credential": "credential"}[k],
        value,
    )
