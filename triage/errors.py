"""One hierarchy for triage's errors: each says where, what is wrong, and the fix.

Every error triage raises on purpose is a `TriageError`, so the command line catches
one base (never `ValueError`) and prints one format:

    <where>: <problem>
      fix: <fix>

The kinds live beside the code that raises them (`RuleError` in core/filters,
`ImapError` in sources/imap ...) and derive from a base here. Kinds that were a
`ValueError` or `RuntimeError` keep it as a second base: code that catches those
goes on working.

A raise site may give the three parts, or one sentence as older code writes it
("<where>: <problem>; fix: <fix>"): the sentence is split at its "fix:" so that it
prints the same way. `RecordedError` kinds (a server's or a message's failure) keep
their text on one line: it is stored in a row (a mailbox's last error, an outbox
row's, a quarantine reason) and shown on single status lines.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

_FIX = re.compile(r"\n  fix: |; fix: ")


class TriageError(Exception):
    """A problem triage can name: where, what, and what to do about it."""

    one_line: ClassVar[bool] = False  # RecordedError: "<where>: <problem>; fix: <fix>"

    def __init__(
        self, where: Path | str, problem: str | None = None, fix: str | None = None
    ) -> None:
        if problem is None:  # one sentence: split at its fix
            where, problem, fix = "", *_split(str(where))
        self.where = str(where)
        self.problem = problem
        self.fix = fix or None
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The one format: `<where>: <problem>` and, when there is one, the fix."""
        text = f"{self.where}: {self.problem}" if self.where else self.problem
        if self.fix:
            text += f"; fix: {self.fix}" if self.one_line else f"\n  fix: {self.fix}"
        return text

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple:
        # Kinds have constructors of their own (ImapError(kind, message) ...): rebuild from
        # the state, so any of them crosses a process boundary (a parse worker) intact.
        return (_rebuild, (type(self), self.args, self.__dict__.copy()))


def _split(sentence: str) -> tuple[str, str | None]:
    problem, *fix = _FIX.split(sentence, maxsplit=1)
    return problem, (fix[0] if fix else None)


def _rebuild(cls: type[TriageError], args: tuple, state: dict) -> TriageError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class RecordedError(TriageError):
    """A failure met while running (a server, a message, a secret), recorded and shown on
    one line: its text is kept as `<where>: <problem>; fix: <fix>`."""

    one_line = True


class ConfigError(TriageError, ValueError):
    """A configuration that cannot be used: names the file, the key and the fix."""

    def __init__(self, path: Path | str, key: str, problem: str, fix: str) -> None:
        super().__init__(path, f"[{key}] {problem}", fix)
        self.key = key


class InstantError(TriageError, ValueError):
    """A time that is not an ISO 8601 instant with a zone (triage.instants.parse)."""
