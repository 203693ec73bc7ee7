"""rules/filters.toml -> validated `Rule`s; every error names the file, the line and the fix.

An operator edits this file by hand and `triage check` reads it first, so a
problem is reported where it is written (the key's own line inside its
`[[rule]]` block) with what to write instead.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from triage.core.filter_rules import (
    ANSWERS,
    CATEGORIES,
    FIELDS_FIXED,
    STRENGTHS,
    TESTS,
    Rule,
    normalise,
)
from triage.errors import TriageError

_PHRASE_TESTS = ("begins_with", "contains", "equals")
_LIST_TESTS = ("begins_with_any", "contains_any", "any_of")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")


class RuleError(TriageError, ValueError):
    """A rule file that cannot be used; the message names file, line and fix."""

    def __init__(self, path: Path | str, line: int | None, problem: str, fix: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {problem}\n  fix: {fix}")


def read_rules(path: Path) -> tuple[Rule, ...]:
    """The rules of one filter file, in file order."""
    text = _read(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _line_of(str(exc))
        raise RuleError(
            path, line, f"not valid TOML ({exc})", "correct the syntax at that line"
        ) from None
    return parse_rules(data, path, text)


def parse_rules(data: dict, path: Path, text: str = "") -> tuple[Rule, ...]:
    """Validate the `[[rule]]` tables; every error names the offending line and the fix."""
    source_lines = text.splitlines()
    lines = _rule_lines(text)
    raw_rules = data.get("rule", [])
    unknown = set(data) - {"rule"}
    if unknown:
        raise RuleError(
            path,
            None,
            f"unknown top-level key(s) {sorted(unknown)}",
            "rules are written as [[rule]] tables",
        )
    if not isinstance(raw_rules, list):
        raise RuleError(
            path, None, "'rule' must be an array of tables", "write each rule as [[rule]]"
        )
    seen: dict[str, int | None] = {}
    rules = []
    for n, raw in enumerate(raw_rules):
        line = lines[n] if n < len(lines) else None
        end = lines[n + 1] if n + 1 < len(lines) else len(source_lines) + 1

        def where(key: str, start: int | None = line, stop: int = end) -> int | None:
            """The line of `key` inside this rule's block, else the block's first line."""
            if start is None:
                return None
            for k in range(start, stop):
                if re.match(rf"\s*{re.escape(key)}\s*=", source_lines[k - 1]):
                    return k
            return start

        try:
            rule = _one_rule(raw, path, line)
        except _KeyProblem as exc:
            raise RuleError(path, where(exc.key), exc.problem, exc.fix) from None
        if rule.id in seen:
            raise RuleError(
                path,
                line,
                f"rule id {rule.id!r} is used twice (first at line {seen[rule.id]})",
                "give each rule its own id",
            )
        seen[rule.id] = line
        rules.append(rule)
    return tuple(rules)


class _KeyProblem(Exception):
    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key, self.problem, self.fix = key, problem, fix


_KNOWN_KEYS = {
    "id",
    "field",
    "test",
    "phrase",
    "phrases",
    "source",
    "except",
    "enabled",
    "strength",
    "answered_by",
    "category",
    "value",
    "key",
}


def _one_rule(raw: object, path: Path, line: int | None) -> Rule:
    """One rule table -> Rule; a problem with one key raises `_KeyProblem` for its line."""
    if not isinstance(raw, dict):
        raise RuleError(
            path, line, "a rule must be a table", "write it as [[rule]] with key = value lines"
        )
    extra = set(raw) - _KNOWN_KEYS
    if extra:
        raise _KeyProblem(
            sorted(extra)[0], f"unknown key(s) {sorted(extra)}", f"use only {sorted(_KNOWN_KEYS)}"
        )
    rid = raw.get("id")
    if not isinstance(rid, str) or not rid.strip():
        raise RuleError(path, line, "the rule has no 'id'", 'add id = "a-short-name"')
    field = raw.get("field")
    if not isinstance(field, str) or not (
        field in FIELDS_FIXED or (field.startswith("header:") and _HEADER_NAME.match(field[7:]))
    ):
        raise _KeyProblem(
            "field",
            f"rule {rid!r}: field {field!r} is not known",
            f"use one of {list(FIELDS_FIXED)} or header:NAME",
        )
    test = raw.get("test")
    if test not in TESTS:
        raise _KeyProblem(
            "test", f"rule {rid!r}: test {test!r} is not known", f"use one of {list(TESTS)}"
        )
    phrases: tuple[str, ...] = ()
    pattern = None
    if test in _PHRASE_TESTS or test == "matches":
        phrase = raw.get("phrase")
        if not isinstance(phrase, str) or not phrase.strip():
            raise _KeyProblem(
                "test",
                f"rule {rid!r}: test {test!r} needs a 'phrase'",
                'add phrase = "text to look for"',
            )
        phrases = (normalise(phrase),)
        if test == "matches":
            try:
                pattern = re.compile(phrase, re.IGNORECASE)
            except re.error as exc:
                raise _KeyProblem(
                    "phrase",
                    f"rule {rid!r}: phrase is not a valid regular expression ({exc})",
                    "fix the expression (Python re syntax)",
                ) from None
    elif test in _LIST_TESTS:
        listed = raw.get("phrases")
        if (
            not isinstance(listed, list)
            or not listed
            or not all(isinstance(p, str) and p.strip() for p in listed)
        ):
            raise _KeyProblem(
                "test",
                f"rule {rid!r}: test {test!r} needs 'phrases', a list of strings",
                'add phrases = ["first", "second"]',
            )
        phrases = tuple(normalise(p) for p in listed)
    value = raw.get("value")
    key = raw.get("key", "")
    if test == "at_least":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _KeyProblem(
                "test" if value is None else "value",
                f"rule {rid!r}: test 'at_least' needs a number 'value' (got {value!r})",
                "add value = 5 (no quotes)",
            )
        if not isinstance(key, str) or (key and not re.fullmatch(r"[A-Za-z0-9_-]+", key)):
            raise _KeyProblem(
                "key",
                f"rule {rid!r}: 'key' must be a name such as SCL or score",
                'write key = "SCL" (letters, digits, - and _), or leave it out',
            )
    elif value is not None or key:
        name = "value" if value is not None else "key"
        raise _KeyProblem(
            name,
            f"rule {rid!r}: {name!r} is read only by test 'at_least'",
            f'remove {name}, or use test = "at_least"',
        )
    category = raw.get("category", "")
    if category and category not in CATEGORIES:
        raise _KeyProblem(
            "category",
            f"rule {rid!r}: category {category!r} is not known",
            f"use one of {list(CATEGORIES)}",
        )
    excepted = raw.get("except", [])
    if not isinstance(excepted, list) or not all(isinstance(p, str) for p in excepted):
        raise _KeyProblem(
            "except", f"rule {rid!r}: 'except' must be a list of strings", 'write except = ["no"]'
        )
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _KeyProblem(
            "enabled",
            f"rule {rid!r}: 'enabled' must be true or false",
            "write enabled = false (no quotes)",
        )
    strength = raw.get("strength", "strong")
    if strength not in STRENGTHS:
        raise _KeyProblem(
            "strength",
            f"rule {rid!r}: strength {strength!r} is not known",
            'write strength = "strong" (filters alone) or "weak" (a phrase; review when a person shows)',
        )
    answered = raw.get("answered_by", [])
    if not isinstance(answered, list) or not all(a in ANSWERS for a in answered):
        raise _KeyProblem(
            "answered_by",
            f"rule {rid!r}: answered_by {answered!r} names an unknown fact",
            f"use a list of {list(ANSWERS)}",
        )
    if answered and strength != "weak":
        raise _KeyProblem(
            "answered_by",
            f"rule {rid!r}: only a weak rule can be answered",
            'add strength = "weak" or remove answered_by',
        )
    if test == "sent_by_us" and field != "message_id":
        raise _KeyProblem(
            "test",
            f"rule {rid!r}: test 'sent_by_us' reads Message-IDs only",
            'write field = "message_id"',
        )
    source = raw.get("source", "")
    if not isinstance(source, str) or not source.strip():
        raise RuleError(
            path,
            line,
            f"rule {rid!r} does not name its source",
            'add source = "where this rule comes from"',
        )
    return Rule(
        rid,
        field.lower(),
        test,
        phrases,
        source,
        tuple(normalise(p) for p in excepted),
        enabled,
        line,
        pattern,
        strength,
        tuple(answered),
        category,
        float(value) if test == "at_least" else None,
        key.casefold() if isinstance(key, str) else "",
        frozenset(phrases) if test == "any_of" else frozenset(),
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RuleError(
            path, None, "the file does not exist", "create it or point the config at the right file"
        ) from None
    except UnicodeDecodeError as exc:
        raise RuleError(
            path, None, f"not UTF-8 ({exc.reason} at byte {exc.start})", "save the file as UTF-8"
        ) from None


def _rule_lines(text: str) -> list[int]:
    return [n for n, line in enumerate(text.splitlines(), 1) if line.strip() == "[[rule]]"]


def _line_of(message: str) -> int | None:
    found = re.search(r"line (\d+)", message)
    return int(found.group(1)) if found else None
