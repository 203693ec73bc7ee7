"""What a filter rule is: the fields it reads, its tests, strengths and categories.

A `Rule` is one `[[rule]]` table of rules/filters.toml, validated
(`triage.core.filter_loader`) and normalised, with the test it applies to one
normalised value. Which rule hits a message is `triage.core.filters`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
# A category names what a rule's mail is; `spam` is listed apart (`triage filtered`).
CATEGORIES = ("bounce", "autoreply", "report", "bulk", "notification", "spam", "loop")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_APOSTROPHES = "\u2019\u2018\u02bc\u2032"  # read as "'"


def normalise(text: str) -> str:
    """Case-folded, one kind of apostrophe, whitespace runs as one space."""
    if not text.isascii():  # ASCII text holds no other apostrophe
        for apostrophe in _APOSTROPHES:  # `in` and `replace` scan in C; `translate` with a
            if apostrophe in text:  # table looked up every character: 100 µs for 2 kB of
                text = text.replace(apostrophe, "'")  # Japanese
    return " ".join(text.casefold().split())


@dataclass(frozen=True, slots=True)
class Rule:
    """One enabled or disabled `[[rule]]`, its phrases normalised, as the file gave it."""

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
        test = self.test
        # The tests most rules use, without a call per value.
        if test in ("contains", "contains_any"):
            # `in` per phrase: 4× faster than one regular expression of them all
            for value in values:
                for phrase in self.phrases:
                    if phrase in value:
                        return value
            return None
        if test in ("begins_with", "begins_with_any"):
            for value in values:
                if value.startswith(self.phrases):
                    return value
            return None
        if test == "any_of":  # every header name of a message, its part types: often twenty
            phrase_set = self.phrase_set
            for value in values:
                if (value.split(";", 1)[0].strip() if ";" in value else value) in phrase_set:
                    return value
            return None
        for value in values:
            if self._hit(value, own_domains, ours):
                return value
        return None

    def _hit(self, value: str, own_domains: frozenset[str], ours: re.Pattern[str] | None) -> bool:
        """The tests `matches` does not answer itself, for one value."""
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
        if test == "at_least":
            number = _number_in(value, self.key)
            return number is not None and self.value is not None and number >= self.value
        return value in self.phrases  # equals


def _number_in(value: str, key: str) -> float | None:
    """The number at the start of `value`, or after `key:` / `key=` in a `;` or `,` list.

    `SCL:5` in X-Forefront-Antispam-Report, `score=7.1` in X-Spam-Status, a bare `5`
    in X-MS-Exchange-Organization-SCL. No number: None (the rule does not fire).
    """
    if not key and value.isdecimal():  # a count (links, images): no pattern to run
        return float(value)
    if key:
        found = re.search(rf"(?:^|[;,\s]){re.escape(key)}\s*[:=]\s*([-+]?\d+(?:\.\d+)?)", value)
        return float(found.group(1)) if found else None
    found = _NUMBER.match(value.strip())
    return float(found.group(0)) if found else None
