"""Mail no human wrote: the documented spam filter plus structural signals.

Rules are data (rules/filters.toml). This module loads and validates them and
answers one question, purely: which enabled rule, if any, does this Email hit?
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from triage.core.message import Email
from triage.errors import TriageError

FIELDS_FIXED = (
    "from",
    "subject",
    "body",
    "report_type",
    "part_types",
    "message_id",
    "body_head",
    "body_tail",
    "links",
    "tracking_links",
    "images",
    "header_names",
    "foreign_return_path",
)
# Fields read from the bodies: a rule on one of them makes the filters complete the message.
BODY_FIELDS = frozenset({"body", "body_head", "body_tail", "links", "tracking_links", "images"})
# Where newsletters put their "view online" line and their footer: reading only there is
# cheaper than the whole body, and a phrase in the middle of a person's text does not count.
HEAD_CHARS = 600
TAIL_CHARS = 1_200
TESTS = (
    "begins_with",
    "contains",
    "equals",
    "begins_with_any",
    "contains_any",
    "any_of",
    "matches",
    "present",
    "own_domain",
    "sent_by_us",
    "at_least",
)
STRENGTHS = ("strong", "weak")
# Facts about a message that can answer (set aside) a weak rule; see triage/core/evidence.py.
ANSWERS = ("envelope-rewritten",)
_PHRASE_TESTS = ("begins_with", "contains", "equals")
_LIST_TESTS = ("begins_with_any", "contains_any", "any_of")
# A category names what a rule's mail is; `spam` is listed apart (`triage filtered`).
CATEGORIES = ("bounce", "autoreply", "report", "bulk", "notification", "spam", "loop")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'"})


class RuleError(TriageError, ValueError):
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
    category: str = ""
    value: float | None = None  # for at_least
    key: str = ""  # for at_least: read the number after KEY (KEY:5; or KEY=5) in the value
    phrase_set: frozenset[str] = frozenset()  # for any_of

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
            # The shape of the Message-IDs our acknowledgements carry (triage/core/replies.py
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
            token = value.split(";", 1)[0].strip() if ";" in value else value
            return token in self.phrase_set
        if test == "at_least":
            number = _number_in(value, self.key)
            return number is not None and self.value is not None and number >= self.value
        if test in ("begins_with", "begins_with_any"):
            return value.startswith(self.phrases)
        if test in ("contains", "contains_any"):
            # `in` per phrase: 4× faster than one regular expression of them all
            return any(p in value for p in self.phrases)
        return value in self.phrases  # equals


@dataclass(frozen=True, slots=True)
class Hit:
    rule: Rule
    value: str

    @property
    def why(self) -> str:
        shown = self.value if len(self.value) <= 80 else self.value[:77] + "..."
        rule = self.rule
        test = rule.test.replace("_", " ")
        if rule.test == "at_least":
            test = f"{rule.key + ' ' if rule.key else ''}at least {rule.value:g}"
        weak = ", weak evidence" if rule.weak else ""
        return f"{rule.field} {test} → {shown!r} ({rule.source}{weak})"


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

    header_names: frozenset[str] = field(default=frozenset(), init=False, compare=False)

    def __post_init__(self) -> None:
        # The headers the enabled rules read, once: the parser keeps these (`message.read`).
        names = frozenset(
            r.field[7:] for r in self.rules if r.enabled and r.field.startswith("header:")
        )
        object.__setattr__(self, "header_names", names)

    def first_match(self, email: Email, complete: Callable[[], Email] | None = None) -> Hit | None:
        """The first enabled rule in file order that fires on `email`, strong or weak.

        `email` may be a head without bodies (body_kind "deferred"): the first
        rule that reads the bodies (body, links, images) calls `complete` for the
        full message, so mail a header rule catches never pays for its bodies.
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
            if rule.field in BODY_FIELDS and email.body_kind == "deferred" and complete is not None:
                email = complete()
            values = cache.get(rule.field)
            if values is None:
                if rule.field in _BODY_PARTS:  # a slice of the body, normalised once
                    body = cache.get("body")
                    if body is None:
                        body = cache["body"] = field_values(email, "body")
                    values = cache[rule.field] = tuple(_BODY_PARTS[rule.field](b) for b in body)
                else:
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
    if field == "header_names":  # lower-case tokens already
        return email.header_names
    getter = _FIELD_GETTERS[field]
    return tuple(normalise(v) for v in getter(email) if v)


_FIELD_GETTERS: dict[str, Callable[[Email], tuple[str, ...]]] = {
    "from": lambda e: (e.from_addr, e.from_display) if e.from_name else (e.from_addr,),
    "subject": lambda e: (e.subject,),
    "body": lambda e: (e.body,),
    "body_head": lambda e: (normalise(e.body)[:HEAD_CHARS],),
    "body_tail": lambda e: (normalise(e.body)[-TAIL_CHARS:],),
    "report_type": lambda e: e.report_types,
    "part_types": lambda e: e.part_types,
    "message_id": lambda e: (e.message_id or "",),
    "links": lambda e: (str(e.links),),
    "tracking_links": lambda e: (str(e.tracking_links),),
    "images": lambda e: (str(e.images),),
    "header_names": lambda e: e.header_names,
    "foreign_return_path": lambda e: _foreign_return_path(e),
}


_BODY_PARTS: dict[str, Callable[[str], str]] = {
    "body_head": lambda b: b[:HEAD_CHARS],
    "body_tail": lambda b: b[-TAIL_CHARS:],
}


def _site(address: str) -> str:
    """The last two labels of an address's domain: mail.acme.example and acme.example agree."""
    domain = address.rsplit("@", 1)[-1].strip("<> \t").rstrip(".").casefold()
    return ".".join(domain.split(".")[-2:]) if "@" in address else ""


def _foreign_return_path(email: Email) -> tuple[str, ...]:
    """The envelope sender when it is at another site than From (a mail service sending for
    someone), else nothing: a person's own envelope is at their own domain."""
    path = email.first("return-path")
    site = _site(path)
    if not site or site == _site(email.from_addr):
        return ()
    return (path,)


def _number_in(value: str, key: str) -> float | None:
    """The number at the start of `value`, or after `key:` / `key=` in a `;` or `,` list.

    `SCL:5` in X-Forefront-Antispam-Report, `score=7.1` in X-Spam-Status, a bare `5`
    in X-MS-Exchange-Organization-SCL. No number: None (the rule does not fire).
    """
    if key:
        found = re.search(rf"(?:^|[;,\s]){re.escape(key)}\s*[:=]\s*([-+]?\d+(?:\.\d+)?)", value)
        return float(found.group(1)) if found else None
    found = _NUMBER.match(value.strip())
    return float(found.group(0)) if found else None


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
