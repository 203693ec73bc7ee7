"""Mail no human wrote: the documented spam filter plus structural signals.

Rules are data (rules/filters.toml, read by `triage.core.filter_loader` into
`triage.core.filter_rules.Rule`s). This module answers one question, purely:
which enabled rule, if any, does this Email hit? It also says which fields a
rule reads from the message, and which headers the parser must keep for them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from triage.core.filter_loader import RuleError, read_rules
from triage.core.filter_rules import CATEGORIES, Rule, normalise
from triage.core.message import Email

# RuleError, CATEGORIES and normalise are named here too, where the commands and the
# evidence model import them.
__all__ = [
    "CATEGORIES", "FilterSet", "Hit", "Rule", "RuleError",
    "field_values", "normalise", "our_message_ids",
]  # fmt: skip

# Fields read from the bodies: a rule on one of them makes the filters complete the message.
BODY_FIELDS = frozenset({"body", "body_head", "body_tail", "links", "tracking_links", "images"})
# Where newsletters put their "view online" line and their footer: reading only there is
# cheaper than the whole body, and a phrase in the middle of a person's text does not count.
HEAD_CHARS = 600
TAIL_CHARS = 1_200


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
        """Read and check one filter file; `RuleError` names the file, the line and the fix."""
        rules = read_rules(path)
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
