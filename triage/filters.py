"""Mail no human wrote: the documented spam filter plus structural signals.

Rules are data (rules/filters.toml). This module loads and validates them and
answers one question, purely: which enabled rule, if any, does this Email hit?
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from triage.message import Email

FIELDS_FIXED = ("from", "subject", "body", "report_type", "part_types", "message_id")
TESTS = (
    "begins_with",
    "contains",
    "equals",
    "begins_with_any",
    "any_of",
    "matches",
    "present",
    "own_domain",
    "sent_by_us",
)
STRENGTHS = ("strong", "weak")
# Facts about a message that can answer (set aside) a weak rule; see triage/evidence.py.
ANSWERS = ("envelope-rewritten",)
_PHRASE_TESTS = ("begins_with", "contains", "equals")
_LIST_TESTS = ("begins_with_any", "any_of")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'"})


class RuleError(ValueError):
    """A rule file that cannot be used; the message names file, line and fix."""

    def __init__(self, path: Path | str, line: int | None, problem: str, fix: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {problem}\n  fix: {fix}")


def normalise(text: str) -> str:
    """Case-folded, one kind of apostrophe, whitespace runs as one space."""
    return " ".join(text.translate(_APOSTROPHES).casefold().split())


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    field: str
    test: str
    phrases: tuple[str, ...]  # normalised
    source: str
    excepted: tuple[str, ...] = ()
    enabled: bool = True
    line: int | None = None
    pattern: re.Pattern[str] | None = None
    # strong: the rule alone filters. weak: a phrase that also catches people; when it is
    # the only evidence and the mail shows a person, the mail goes to review instead.
    strength: str = "strong"
    answered_by: tuple[str, ...] = ()  # facts that set this rule's hit aside (ANSWERS)

    @property
    def weak(self) -> bool:
        return self.strength == "weak"

    def matches(
        self,
        values: tuple[str, ...],
        own_domains: frozenset[str],
        ours: re.Pattern[str] | None = None,
    ) -> str | None:
        """The value that fired, or None. `values` are already normalised."""
        for value in values:
            if self._hit(value, own_domains, ours):
                return value
        return None

    def _hit(self, value: str, own_domains: frozenset[str], ours: re.Pattern[str] | None) -> bool:
        test = self.test
        if test == "sent_by_us":
            # The shape of the Message-IDs our acknowledgements carry (triage/replies.py
            # `render`), in our domains; the outbox itself is asked in stage two.
            return ours is not None and ours.fullmatch(value) is not None
        if test == "present":
            token = value.split(";", 1)[0].strip()
            return bool(token) and token not in self.excepted
        if test == "own_domain":
            domain = value.rsplit("@", 1)[-1].strip("<> ")
            return "@" in value and domain in own_domains
        if test == "matches":
            return self.pattern is not None and self.pattern.search(value) is not None
        if test == "any_of":
            token = value.split(";", 1)[0].strip()
            return token in self.phrases
        if test in ("begins_with", "begins_with_any"):
            return value.startswith(self.phrases)
        if test == "contains":
            return any(p in value for p in self.phrases)
        return value in self.phrases  # equals


@dataclass(frozen=True, slots=True)
class Hit:
    rule: Rule
    value: str

    @property
    def why(self) -> str:
        shown = self.value if len(self.value) <= 80 else self.value[:77] + "..."
        return (
            f"{self.rule.field} {self.rule.test.replace('_', ' ')} → {shown!r} ({self.rule.source})"
        )


@functools.lru_cache(maxsize=16)
def our_message_ids(own_domains: frozenset[str], prefix: str) -> re.Pattern[str]:
    """Message-IDs as `render` writes them, normalised: `<t-000123.<hex>@our.domain>`."""
    domains = "|".join(re.escape(d.casefold()) for d in sorted(own_domains))
    return re.compile(rf"<{re.escape(prefix.casefold())}\d+\.[0-9a-f]{{8,64}}@(?:{domains})>")


@dataclass(frozen=True, slots=True)
class FilterSet:
    rules: tuple[Rule, ...]
    own_domains: frozenset[str] = frozenset({"triage.invalid"})
    path: str = ""
    ticket_prefix: str = "T-"

    @classmethod
    def from_toml(
        cls, path: Path, own_domains: frozenset[str] | None = None, ticket_prefix: str = "T-"
    ) -> FilterSet:
        text = _read(path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            line = _line_of(str(exc))
            raise RuleError(
                path, line, f"not valid TOML ({exc})", "correct the syntax at that line"
            ) from None
        rules = parse_rules(data, path, text)
        return cls(rules, own_domains or frozenset({"triage.invalid"}), str(path), ticket_prefix)

    @property
    def sent_by_us(self) -> Rule | None:
        """The enabled rule that recognises our own mail coming back, if any."""
        return next((r for r in self.rules if r.enabled and r.test == "sent_by_us"), None)

    def first_match(self, email: Email, complete: Callable[[], Email] | None = None) -> Hit | None:
        """The first enabled rule in file order that fires on `email`, strong or weak.

        `email` may be a head without bodies (body_kind "deferred"): the first
        rule that reads the body calls `complete` for the full message.
        """
        for hit in self._hits(email, complete):
            return hit
        return None

    def hits(self, email: Email, complete: Callable[[], Email] | None = None) -> tuple[Hit, ...]:
        """The rules that fire, in file order, up to and including the first strong one.

        No strong rule in the result means weak rules are the only evidence:
        the pipeline then weighs them against the signs of a person.
        """
        found = []
        for hit in self._hits(email, complete):
            found.append(hit)
            if not hit.rule.weak:
                break
        return tuple(found)

    def _hits(self, email: Email, complete: Callable[[], Email] | None) -> Iterator[Hit]:
        cache: dict[str, tuple[str, ...]] = {}
        ours = our_message_ids(self.own_domains, self.ticket_prefix)
        for rule in self.rules:
            if not rule.enabled:
                continue
            if rule.field == "body" and email.body_kind == "deferred" and complete is not None:
                email = complete()
            values = cache.get(rule.field)
            if values is None:
                values = cache[rule.field] = field_values(email, rule.field)
            if not values:
                continue
            value = rule.matches(values, self.own_domains, ours)
            if value is not None:
                yield Hit(rule, value)


def field_values(email: Email, field: str) -> tuple[str, ...]:
    """The normalised strings a rule on `field` looks at."""
    if field.startswith("header:"):
        return tuple(normalise(v) for v in email.header(field[7:]))
    getter = _FIELD_GETTERS[field]
    return tuple(normalise(v) for v in getter(email) if v)


_FIELD_GETTERS: dict[str, Callable[[Email], tuple[str, ...]]] = {
    "from": lambda e: (e.from_addr, e.from_display) if e.from_name else (e.from_addr,),
    "subject": lambda e: (e.subject,),
    "body": lambda e: (e.body,),
    "report_type": lambda e: e.report_types,
    "part_types": lambda e: e.part_types,
    "message_id": lambda e: (e.message_id or "",),
}


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
