"""Weak filter rules weighed against the signs of a person: filtered, review, or a ticket.

Pure. Every signal is a named fact with where it was seen and which way it points,
so `triage explain` and `triage review` can print both sides; the verdict is a
stated rule over those facts (docs/signals.md, "Evidence"), never a score.
The vocabulary is data: rules/evidence.toml.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from triage.core.filter_rules import CATEGORIES
from triage.core.filters import Hit, normalise
from triage.core.message import Email
from triage.core.quotes import QuoteMarkers, quote_start, reply_in_conversation
from triage.errors import ConfigError

PERSON, MACHINE = "person", "machine"
FILTERED, REVIEW, TICKET = "filtered", "review", "ticket"
_LAST_LINES = 8  # where a sign-off or the sender's name is looked for
_SIGN_OFF_WORDS = 6  # a closing line is short: "Best regards," not a sentence
_SOURCE = "rules/evidence.toml"


@dataclass(frozen=True, slots=True)
class Signal:
    """One fact about a message and which way it points."""

    name: str  # e.g. rule:sow-from-info, mail-client, greeting, known-contact
    side: str  # person | machine
    where: str  # the header, body part, directory or store it was read from
    detail: str  # what was seen there
    decisive: bool = False  # a person signal that alone is enough for review
    answered: str = ""  # a machine signal set aside, and why
    # The category of another filter's verdict this rule reads (e.g. "spam"): every rule
    # of one verdict that fires counts once ([verdict] in rules/evidence.toml).
    verdict: str = ""

    def line(self) -> str:
        """One line for `explain`, the review listing and the digest."""
        mark = " (decisive)" if self.decisive else ""
        if self.verdict:
            mark += f" (part of one {self.verdict} verdict)"
        aside = f"; set aside: {self.answered}" if self.answered else ""
        return f"{self.side}: {self.name}{mark}: {self.where}: {self.detail}{aside}"

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "side": self.side,
            "where": self.where,
            "detail": self.detail,
            "decisive": self.decisive,
            "answered": self.answered or None,
            "verdict": self.verdict or None,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: str  # filtered | review | ticket
    why: str


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """rules/evidence.toml, normalised for matching."""

    needs: int
    mail_clients: tuple[str, ...]
    composer_message_ids: tuple[str, ...]
    greetings: tuple[str, ...]
    generic_greetings: tuple[str, ...]
    sign_offs: tuple[str, ...]
    quotes: QuoteMarkers
    headers: frozenset[str]
    mailers: tuple[str, ...]
    bulk_wording: tuple[str, ...]
    auto_reply_wording: tuple[str, ...]
    verdicts: frozenset[str] = frozenset()  # filter categories whose rules are one verdict
    path: str = _SOURCE

    @classmethod
    def from_toml(cls, path: Path) -> Vocabulary:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                path, "-", "the file does not exist", "copy rules/evidence.toml from triage"
            ) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(path, "-", f"not valid TOML ({exc})", "correct the syntax") from None
        known = {
            "review": {"needs"},
            "person": {
                "mail_clients",
                "composer_message_ids",
                "greetings",
                "generic_greetings",
                "sign_offs",
                "quote_attributions",
                "quote_separators",
                "quote_header_from",
                "quote_header_sent",
            },
            "machine": {"headers", "mailers", "bulk_wording", "auto_reply_wording"},
            "verdict": {"categories"},
        }
        for section, value in data.items():
            if section not in known or not isinstance(value, dict):
                raise ConfigError(
                    path, section, "is not a known table", f"use only {sorted(known)}"
                )
            for key in value:
                if key not in known[section]:
                    raise ConfigError(
                        path,
                        f"{section}.{key}",
                        "is not a known key",
                        f"use one of {sorted(known[section])}",
                    )
        needs = data.get("review", {}).get("needs", 2)
        if not isinstance(needs, int) or isinstance(needs, bool) or not 1 <= needs <= 5:
            raise ConfigError(
                path, "review.needs", f"{needs!r} is not a whole number 1-5", "write needs = 2"
            )

        def words(section: str, key: str) -> tuple[str, ...]:
            value = data.get(section, {}).get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise ConfigError(
                    path,
                    f"{section}.{key}",
                    "must be a list of non-empty strings",
                    f'write {key} = ["first", "second"]',
                )
            return tuple(normalise(v) for v in value)

        verdicts = words("verdict", "categories")
        unknown = sorted(set(verdicts) - set(CATEGORIES))
        if unknown:
            raise ConfigError(
                path,
                "verdict.categories",
                f"{unknown} is not a category of rules/filters.toml",
                f'use categories from {list(CATEGORIES)}, e.g. categories = ["spam"]',
            )

        return cls(
            needs=needs,
            mail_clients=words("person", "mail_clients"),
            composer_message_ids=words("person", "composer_message_ids"),
            greetings=words("person", "greetings"),
            generic_greetings=words("person", "generic_greetings"),
            sign_offs=words("person", "sign_offs"),
            quotes=QuoteMarkers(
                attributions=words("person", "quote_attributions"),
                separators=words("person", "quote_separators"),
                header_from=words("person", "quote_header_from"),
                header_sent=words("person", "quote_header_sent"),
            ),
            headers=frozenset(words("machine", "headers")),
            mailers=words("machine", "mailers"),
            bulk_wording=words("machine", "bulk_wording"),
            auto_reply_wording=words("machine", "auto_reply_wording"),
            verdicts=frozenset(verdicts),
            path=str(path),
        )


def gather(
    email: Email, hits: tuple[Hit, ...], vocabulary: Vocabulary, contact: str | None
) -> tuple[Signal, ...]:
    """Stage one's signals: the weak rules that fired, and what the message shows.

    `contact` is the verified contact the sender matched exactly (or by plus or
    alias), else None. A reply into one of our tickets needs the store: `weigh`
    takes it separately.
    """
    signals: list[Signal] = []
    rewritten = _envelope_rewritten(email)
    for hit in hits:
        answered = ""
        if "envelope-rewritten" in hit.rule.answered_by and rewritten:
            answered = rewritten
        category = hit.rule.category
        signals.append(
            Signal(
                f"rule:{hit.rule.id}",
                MACHINE,
                hit.rule.field,
                f"{hit.why}",
                answered=answered,
                verdict=category if category in vocabulary.verdicts else "",
            )
        )
    if contact:
        signals.append(Signal("known-contact", PERSON, "contacts", contact, decisive=True))
    agent = _agent(email)
    client = None
    if agent and _starts(agent[1], vocabulary.mailers):
        signals.append(Signal("mailer-software", MACHINE, agent[0], agent[1]))
    elif agent and _starts(agent[1], vocabulary.mail_clients):
        client = Signal("mail-client", PERSON, agent[0], agent[1])
    composed = bool(email.message_id) and _composer(
        email.message_id or "", vocabulary.composer_message_ids
    )
    if client is None and composed:
        client = Signal("mail-client", PERSON, "Message-ID", email.message_id or "")
    if client is not None:
        signals.append(client)
    present = sorted(vocabulary.headers.intersection(email.header_names))
    if present:
        signals.append(Signal("automation-headers", MACHINE, "headers", ", ".join(present)))
    text = normalise(email.body[:20000]) if email.body else ""
    for name, phrases in (
        ("bulk-wording", vocabulary.bulk_wording),
        ("auto-reply-wording", vocabulary.auto_reply_wording),
    ):
        found = next((p for p in phrases if p in text), None)
        if found:
            signals.append(Signal(name, MACHINE, "body", repr(found)))
    lines = [line.strip() for line in email.body.splitlines() if line.strip()]
    if lines:
        opening = normalise(lines[0])
        greeting = _opens_with(opening, vocabulary.greetings)
        if greeting and not _opens_with(opening, vocabulary.generic_greetings):
            signals.append(Signal("greeting", PERSON, "body (first line)", repr(lines[0][:60])))
        quote = quote_start(lines, vocabulary.quotes)
        reply = reply_in_conversation(email, lines, quote)
        if reply:
            signals.append(Signal("conversation-reply", PERSON, "In-Reply-To and body", reply))
        # A reply's last lines are the quoted message's: its author signs above the quote.
        own, where = (lines[:quote], "body (above the quote)") if quote else (lines, "")
        closing = _closing(own[-_LAST_LINES:], vocabulary.sign_offs, email.from_name)
        if closing:
            signals.append(Signal("signature", PERSON, where or "body (last lines)", closing))
    return tuple(signals)


def weigh(signals: tuple[Signal, ...], needs: int) -> Verdict:
    """The verdict over weak rules' hits, by the rule docs/signals.md states.

    Stage two adds `reply_signal` when the message answers one of our tickets.
    """
    rules = [s for s in signals if s.side == MACHINE and s.name.startswith("rule:")]
    standing = [s for s in rules if not s.answered]
    if not standing:
        return Verdict(TICKET, "every weak rule that fired was set aside by the evidence")
    # A sign of a machine beyond the rules means the weak rules are not the only evidence.
    hints = [s.name for s in signals if s.side == MACHINE and not s.name.startswith("rule:")]
    if hints:
        return Verdict(FILTERED, f"weak rules, and signs of a machine: {', '.join(hints)}")
    person = [s for s in signals if s.side == PERSON]
    names = ", ".join(s.name for s in person)
    decisive = [s.name for s in person if s.decisive]
    if decisive:
        return Verdict(
            REVIEW, f"only weak rules fired, and a decisive sign of a person: {decisive[0]}"
        )
    # Every rule of one upstream verdict is that filter's one decision: it counts once.
    counted = _counted(standing)
    verdicts = sorted({s.verdict for s in standing if s.verdict})
    if verdicts and len(counted) == 1:
        # Another filter's score over the whole message, whose false positives are people's
        # ordinary mail: one sign of a person sets it aside for review.
        told = f"one {verdicts[0]} verdict ({', '.join(s.name[5:] for s in standing)})"
        if person:
            return Verdict(
                REVIEW,
                f"only {told}, no sign of a machine, and a sign of a person is enough: {names}",
            )
        return Verdict(FILTERED, f"{told} and no sign of a person")
    once = f"; {len(standing)} fired, one verdict counted once" if verdicts else ""
    if len(person) >= needs and len(person) > len(counted):
        return Verdict(
            REVIEW,
            f"only weak rules fired ({len(counted)}{once}), no sign of a machine, and"
            f" {len(person)} signs of a person ({names}; {needs} needed)",
        )
    return Verdict(
        FILTERED,
        f"{len(counted)} weak rule(s){f' ({once[2:]})' if once else ''} and {len(person)}"
        f" sign(s) of a person{f' ({names})' if person else ''}"
        f" ({needs} needed, and more than the weak rules)",
    )


def _counted(standing: list[Signal]) -> list[str]:
    """One entry per weak rule, and one per upstream verdict however many rules read it."""
    seen: dict[str, None] = {}
    for s in standing:
        seen.setdefault(f"verdict:{s.verdict}" if s.verdict else s.name, None)
    return list(seen)


def reply_signal(ticket: str) -> Signal:
    return Signal(
        "reply-to-ticket", PERSON, "In-Reply-To/References", f"names {ticket}", decisive=True
    )


# -- the facts ------------------------------------------------------------------------------


def _agent(email: Email) -> tuple[str, str] | None:
    for name in ("user-agent", "x-mailer"):
        value = email.first(name)
        if value:
            return name, value
    return None


def _starts(value: str, prefixes: tuple[str, ...]) -> str | None:
    v = normalise(value)
    return next((p for p in prefixes if v.startswith(p)), None)


def _composer(message_id: str, hosts: tuple[str, ...]) -> bool:
    host = message_id.strip("<>").rpartition("@")[2].casefold()
    return any(host == h or host.endswith("." + h) for h in hosts)


def _opens_with(line: str, phrases: tuple[str, ...]) -> str | None:
    for p in phrases:
        if line.startswith(p):
            rest = line[len(p) : len(p) + 1]
            if not rest or not rest.isalnum() or not p.isascii():
                return p
    return None


def _closing(lines: list[str], sign_offs: tuple[str, ...], from_name: str) -> str:
    """The sign-off, signature delimiter or the sender's own name near the end, else ''."""
    name = normalise(from_name)
    first = name.split(" ")[0] if name else ""
    for line in lines:
        if line.rstrip() == "--":
            return "signature delimiter '-- '"
        text = normalise(line)
        if len(text.split()) <= _SIGN_OFF_WORDS:
            found = _opens_with(text, sign_offs)
            if found:
                return f"sign-off {line[:40]!r}"
            if name and len(first) > 1 and (text in (name, first) or text.startswith(first + " ")):
                return f"signed with the sender's name {line[:40]!r}"
    return ""


def _envelope_rewritten(email: Email) -> str:
    """Why the Return-Path says nothing about the author, or '' when it may.

    A forwarder (.forward, a Sieve redirect, a cron'd re-injection) rewrites the
    envelope to its own account and leaves From and Message-ID as the author wrote
    them; a job that mails as itself has its envelope in the same organisation as
    its From or its Message-ID.
    """
    path = email.first("return-path").strip().strip("<>").lower()
    if "@" not in path or not email.from_addr or "@" not in email.from_addr:
        return ""
    envelope = _organisation(path.rpartition("@")[2])
    author = {_organisation(email.from_addr.rpartition("@")[2])}
    if email.message_id and "@" in email.message_id:
        author.add(_organisation(email.message_id.strip("<>").rpartition("@")[2].lower()))
    if envelope in author:
        return ""
    return (
        f"the envelope ({envelope}) is in neither the From nor the Message-ID organisation"
        f" ({', '.join(sorted(author))}): a forwarder rewrote it"
    )


@functools.lru_cache(maxsize=4096)
def _organisation(domain: str) -> str:
    """The registrable domain (Public Suffix List), or the domain itself."""
    domain = domain.strip(".").lower()
    found = _psl().privatesuffix(domain) if re.fullmatch(r"[a-z0-9.-]+", domain) else None
    return found or domain


@functools.cache
def _psl():
    from publicsuffixlist import PublicSuffixList  # about 50 ms: only when an envelope is weighed

    return PublicSuffixList()
