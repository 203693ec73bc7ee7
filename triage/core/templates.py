"""Acknowledgement texts: data in rules/templates/, filled with string.Template.

`$name` placeholders only: a template can name a value but never reach an
object's attributes or run code. A placeholder that is not known fails
`triage check` with the file, the name and the accepted names.
"""

from __future__ import annotations

import html
import re
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from triage.errors import ConfigError

FIELDS = (
    "ticket",
    "subject",
    "priority",
    "meaning",
    "response",
    "due",
    "requester_name",
    "support_address",
    "sender_name",
    "signature",
    "emergency_phone",
    "emergency",
)
# Values that may hold several lines: in HTML each line break becomes <br>.
MULTILINE = frozenset({"signature"})
_SAMPLE = {
    "ticket": "T-000123",
    "subject": "Printer jammed",
    "priority": "P2",
    "meaning": "high",
    "response": "We will answer by Tuesday 10 March 2026, 11:30 EDT.",
    "due": "Tuesday 10 March 2026, 11:30 EDT",
    "requester_name": "Jane",
    "support_address": "support@example.com",
    "sender_name": "Example IT Service Desk",
    "signature": "Example IT Service Desk\n+44 20 7946 0000",
    "emergency_phone": "+44 20 7946 0000",
    "emergency": "In an emergency, call +44 20 7946 0000.",
}


# Said to a sender matched to no contact and no known company, whose systems we know
# nothing about: the level's name only (meanings.toml [unknown_sender] overrides it).
PLAIN_MEANINGS = {1: "urgent", 2: "high", 3: "normal", 4: "low"}


@dataclass(frozen=True, slots=True)
class Templates:
    ack_text: string.Template
    ack_html: string.Template | None
    held_text: string.Template
    meanings: dict[int, str]
    plain_meanings: dict[int, str] = field(default_factory=lambda: dict(PLAIN_MEANINGS))

    @classmethod
    def load(cls, folder: Path) -> Templates:
        meanings_file = folder / "meanings.toml"
        meanings: dict[int, str] = {}
        plain = dict(PLAIN_MEANINGS)
        if meanings_file.is_file():
            try:
                data = tomllib.loads(meanings_file.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(
                    meanings_file, "-", f"not valid TOML ({exc})", "correct the syntax"
                ) from None
            meanings = _levels(meanings_file, data, "meaning", '1 = "critical: ..."')
            plain.update(_levels(meanings_file, data, "unknown_sender", '1 = "urgent"'))
        html_file = folder / "ack.html"
        return cls(
            _template(folder / "ack.txt"),
            _template(html_file) if html_file.is_file() else None,
            _template(folder / "held.txt"),
            meanings,
            plain,
        )

    def render(self, which: str, values: dict[str, str]) -> tuple[str, str | None]:
        """(text, html or None) of template `which` ("ack" or "held").

        A value left empty (no signature, no emergency phone configured) leaves no gap:
        blank lines are closed up to one, none at the end, and an empty `<p></p>` goes.
        """
        if which == "held":
            return self.held_text.substitute(values), None
        text = _BLANKS.sub("\n\n", self.ack_text.substitute(values)).rstrip() + "\n"
        markup = None
        if self.ack_html is not None:
            markup = _EMPTY_P.sub("", self.ack_html.substitute(_escaped(values)))
        return text, markup


_BLANKS = re.compile(r"\n[ \t]*(?:\n[ \t]*)+\n")
_EMPTY_P = re.compile(r"<p>\s*</p>\n?")


def _escaped(values: dict[str, str]) -> dict[str, str]:
    """Every value HTML-escaped; a multi-line one with <br> at its line breaks."""
    out = {k: html.escape(v) for k, v in values.items()}
    for k in MULTILINE & out.keys():
        out[k] = out[k].replace("\n", "<br>\n")
    return out


def _levels(path: Path, data: dict, table: str, example: str) -> dict[int, str]:
    """[table] of level number -> text, validated."""
    values = data.get(table, {})
    if not isinstance(values, dict):
        raise ConfigError(path, table, "must be a table", f"write [{table}] then {example}")
    out: dict[int, str] = {}
    for key, value in values.items():
        if not key.isdigit() or not isinstance(value, str):
            raise ConfigError(path, f"{table}.{key}", "must be a level number and a text", example)
        out[int(key)] = value
    return out


def _template(path: Path) -> string.Template:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            path, "-", "the template is missing", "restore it from the shipped rules/templates/"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(path, "-", "not UTF-8", "save the template as UTF-8") from None
    template = string.Template(text)
    if not template.is_valid():
        raise ConfigError(
            path, "-", "a $ is not followed by a name", "write $$ for a dollar sign, or ${name}"
        )
    unknown = sorted(set(template.get_identifiers()) - set(FIELDS))
    if unknown:
        raise ConfigError(
            path,
            f"${unknown[0]}",
            "is not a value the acknowledgement has",
            f"use only {', '.join('$' + f for f in FIELDS)}",
        )
    template.substitute(_SAMPLE)  # renders: no surprises at send time
    return template
