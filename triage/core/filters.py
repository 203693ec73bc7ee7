"""Mail no human wrote: the documented spam filter plus structural signals.

Rules are data (rules/filters.toml, read by `triage.core.filter_loader` into
`triage.core.filter_rules.Rule`s). This module answers one question, purely:
which enabled rule, if any, does this Email hit? It also says which fields a
rule reads from the message, and which headers the parser must keep for them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
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

    header_names: frozenset[str] = field(default=frozenset(), init=False, compare=False)
    # The enabled rules in file order: position, rule, whether it reads the bodies, the
    # header it reads (a message without that header is passed over unread), and the field
    # whose screen it is behind (`screens`), if any.
    _active: tuple[tuple[int, Rule, bool, str | None, str | None], ...] = field(
        default=(), init=False, compare=False
    )
    # Per field read by many phrase rules (the documented list's From and Subject phrases):
    # one regex that finds a value any of them can fire on. Most mail holds none, and one
    # search costs less than asking each rule in turn (~1 µs a rule).
    screens: dict[str, re.Pattern[str]] = field(default_factory=dict, init=False, compare=False)
    # The enabled rule that recognises our own mail coming back, if any (asked per message).
    sent_by_us: Rule | None = field(default=None, init=False, compare=False)

    def __post_init__(self) -> None:
        # The headers the enabled rules read, once: the parser keeps these (`message.read`).
        names = frozenset(
            r.field[7:] for r in self.rules if r.enabled and r.field.startswith("header:")
        )
        object.__setattr__(self, "header_names", names)
        screens = _screens(r for r in self.rules if r.enabled)
        active = tuple(
            (
                n,
                r,
                r.field in BODY_FIELDS,
                r.field[7:] if r.field.startswith("header:") else None,
                r.field if r.field in screens and _screenable(r) else None,
            )
            for n, r in enumerate(self.rules)
            if r.enabled
        )
        object.__setattr__(self, "screens", screens)
        ours = next((r for r in self.rules if r.enabled and r.test == "sent_by_us"), None)
        object.__setattr__(self, "sent_by_us", ours)
        object.__setattr__(self, "_active", active)

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

        `email` may be a head without bodies (body_kind "deferred"): the rules on
        headers run first, and `complete` is called for the bodies only when a body
        rule can change what the hits decide: the first hit, the first strong hit
        (the deciding rule) and the first category. When a strong header rule
        decides, a weak body rule that could change none of the three is left out
        unread (machine mail that a header catches never pays for its bodies);
        otherwise the result is every hit, as evaluating in file order gives.
        """
        deferred = email.body_kind == "deferred" and complete is not None
        values = _Values(self, email)
        found: list[tuple[int, Hit]] = []
        pending: list[tuple[int, Rule]] = []  # body rules not read yet, in file order
        headers = email.headers
        for n, rule, on_body, header, screened in self._active:
            if on_body and deferred:
                pending.append((n, rule))
                continue
            if header is not None and header not in headers:
                continue
            if screened is not None and not values.could_fire(screened):
                continue
            hit = values.hit(rule)
            if hit is not None:
                found.append((n, hit))
                if not rule.weak:
                    break
        decided = bool(found) and not found[-1][1].rule.weak
        if not pending or (decided and not _body_can_change(found, pending)):
            return tuple(h for _, h in found)
        # The bodies can change the outcome: read them, then merge in file order.
        values = _Values(self, complete(), values.cache)  # type: ignore[misc]  # deferred
        cut = found[-1][0] if decided else len(self.rules)
        for n, rule in pending:
            if n > cut:
                break
            hit = values.hit(rule)
            if hit is not None:
                found.append((n, hit))
        found.sort(key=lambda pair: pair[0])
        out = []
        for _, hit in found:
            out.append(hit)
            if not hit.rule.weak:
                break
        return tuple(out)

    def _hits(self, email: Email, complete: Callable[[], Email] | None) -> Iterator[Hit]:
        """Every hit in file order; the bodies are read at the first body rule reached."""
        values = _Values(self, email)
        for _, rule, on_body, _header, _screened in self._active:
            if on_body and complete is not None and values.email.body_kind == "deferred":
                values = _Values(self, complete(), values.cache)
            hit = values.hit(rule)
            if hit is not None:
                yield hit


# A screen stands for these tests exactly: a value one of their phrases is in, begins or is.
_WHERE = {
    "contains": "anywhere",
    "contains_any": "anywhere",
    "begins_with": "first",
    "begins_with_any": "first",
    "equals": "whole",
}
SCREEN_FROM = 3  # phrase rules on one field; for fewer, asking them costs no more


def _screenable(rule: Rule) -> bool:
    return rule.test in _WHERE and bool(rule.phrases)


def _screens(rules: Iterable[Rule]) -> dict[str, re.Pattern[str]]:
    """Per field with `SCREEN_FROM` or more phrase rules: a regex that searches a value
    successfully whenever one of those rules fires on it (and rarely otherwise)."""
    by_field: dict[str, list[Rule]] = {}
    for rule in rules:
        if _screenable(rule):
            by_field.setdefault(rule.field, []).append(rule)
    screens = {}
    for name, group in by_field.items():
        if len(group) < SCREEN_FROM:
            continue
        phrases: dict[str, list[str]] = {"anywhere": [], "first": [], "whole": []}
        for rule in group:
            phrases[_WHERE[rule.test]].extend(re.escape(p) for p in rule.phrases)
        alternatives = phrases["anywhere"]
        if phrases["first"]:
            alternatives.append(rf"\A(?:{'|'.join(phrases['first'])})")
        if phrases["whole"]:
            alternatives.append(rf"\A(?:{'|'.join(phrases['whole'])})\Z")
        screens[name] = re.compile("|".join(alternatives))
    return screens


def _body_can_change(found: list[tuple[int, Hit]], pending: list[tuple[int, Rule]]) -> bool:
    """Whether a body rule before the deciding (strong) header hit, unread, could change
    what `hits` decides: the first hit, the deciding rule, or the first category."""
    cut = found[-1][0]
    first = found[0][0]
    categorised = next((n for n, h in found if h.rule.category), cut + 1)
    for n, rule in pending:
        if n > cut:
            return False
        if not rule.weak or n < first or (rule.category and n < categorised):
            return True
    return False


class _Values:
    """One message's field values for the rules, each read and normalised once."""

    __slots__ = ("cache", "email", "screened", "_own", "_ours", "_screens")

    def __init__(
        self, filters: FilterSet, email: Email, cache: dict[str, tuple[str, ...]] | None = None
    ) -> None:
        self.email = email
        # Shared between a head and its completed message: their header fields are the same.
        self.cache: dict[str, tuple[str, ...]] = {} if cache is None else cache
        self._own = filters.own_domains
        self._ours = our_message_ids(filters.own_domains, filters.ticket_prefix)
        self._screens = filters.screens
        self.screened: dict[str, bool] = {}

    def of(self, name: str) -> tuple[str, ...]:
        """The normalised values of field `name`, read once."""
        values = self.cache.get(name)
        if values is None:
            values = self.cache[name] = self._read(name)
        return values

    def hit(self, rule: Rule) -> Hit | None:
        values = self.of(rule.field)
        if not values:
            return None
        value = rule.matches(values, self._own, self._ours)
        return None if value is None else Hit(rule, value)

    def could_fire(self, name: str) -> bool:
        """Whether a rule behind the screen of field `name` can fire (asked once)."""
        could = self.screened.get(name)
        if could is None:
            screen = self._screens[name]
            could = self.screened[name] = any(screen.search(v) for v in self.of(name))
        return could

    def _read(self, name: str) -> tuple[str, ...]:
        part = _BODY_PARTS.get(name)
        if part is None:
            return field_values(self.email, name)
        return tuple(part(b) for b in self.of("body"))  # a slice of the body, normalised once


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
