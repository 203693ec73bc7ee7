"""Keyword and header rules -> priority level (1 most urgent ... 4 low), with the evidence.

Pure: values in, values out. The vocabulary is data (rules/priority.toml) compiled once
into a single regular expression, so `infer` is one pass over the subject and one over
the sender's own part of the body.

Decisions, in the order they apply:
  * Only what the sender wrote counts: quoted lines ("> ..."), everything after
    "On ... wrote:", "-----Original Message-----" or an Outlook "From: / Sent:" block,
    and the signature (after a "-- " line) are dropped. E-mail addresses and URLs are
    blanked so "p1-team@acme.example" is no evidence.
  * Whole words only, case-insensitive, in any of the vocabulary's languages
    (`triage.core.priority_vocabulary` says how words are matched).
  * A negation ("not urgent", "no major impact") cancels the word it negates; the word
    is kept as evidence with negated=True so `triage explain` can show it.
  * The subject outranks the body: if the subject holds any (non-negated) evidence the
    body does not influence the level. Within one place a *declared* label ("Sev 3")
    outranks descriptive words ("critical"), then the most urgent level wins.
  * Headers (X-Priority 1/2, Importance: high, Priority: urgent) raise the level found
    by one step at most, never above 1. Low-importance headers never lower it: mail
    clients set them by habit, while words are what the customer chose to write.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from triage.core.owntext import own_text
from triage.core.priority_vocabulary import DASHES, PriorityError, Vocabulary

# PriorityError and Vocabulary are named here too, where the pipeline and tests import them.
__all__ = [
    "DEFAULT_LEVEL", "Evidence", "PriorityError", "PriorityResult", "Vocabulary",
    "infer", "own_text", "scan",
]  # fmt: skip

DEFAULT_LEVEL = 3
# An address starts where its run of address characters starts: without the lookbehind
# every position inside a long run ("aaaa...", a pasted token) rescans it (quadratic).
_NOISE = re.compile(
    r"(?<![\w.+\-])[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+|\b(?:https?|ftp)://\S+|\bwww\.\S+"
)


@dataclass(frozen=True, slots=True)
class Evidence:
    """One vocabulary word found in one place, kept so a decision can be explained."""

    word: str
    where: str  # subject | body | header
    level: int
    negated: bool = False
    declared: bool = False  # a stated label ("Sev 2") rather than a descriptive word


@dataclass(frozen=True, slots=True)
class PriorityResult:
    """The level chosen and every piece of evidence seen, in reading order."""

    level: int
    evidence: tuple[Evidence, ...]
    raised_by_header: bool

    def reasons(self) -> tuple[str, ...]:
        """One line per piece of evidence, for `triage explain`."""
        lines = []
        for e in self.evidence:
            state = "negated, ignored" if e.negated else f"level {e.level}"
            lines.append(f"{e.where}: {e.word!r} ({state})")
        if not self.evidence:
            lines.append(f"no evidence: default level {DEFAULT_LEVEL}")
        return tuple(lines)


def scan(vocab: Vocabulary, text: str, where: str) -> tuple[Evidence, ...]:
    """Every vocabulary word in `text`, negated ones marked, in reading order."""
    low = " " + text.lower()  # the leading space is the boundary before a first word
    if "@" in low or "://" in low or "www." in low:
        low = _NOISE.sub(lambda m: " " * len(m.group()), low)
    original = " " + text if len(text) + 1 == len(low) else low  # lower() may change lengths
    ascii_only = low.isascii()
    if not ascii_only:  # one for one, so the offsets into `original` hold; each `in` and
        for dash in DASHES:  # `replace` is a scan in C (`translate` took 100 µs for 2 kB)
            if dash in low:
                low = low.replace(dash, "-")
    pattern = vocab.spaced_ascii if ascii_only else vocab.spaced_any
    entries = vocab.entries
    cue_before = vocab.cue_before
    found: list[tuple[int, Evidence]] = []
    for m in pattern.finditer(low):  # type: ignore[union-attr]
        start, end = m.start() + 1, m.end()
        entry = entries[m.lastgroup]  # type: ignore[index]
        if entry.level == 0:  # a negation phrase: the words inside it are negated
            phrase = " ".join(original[start:end].split())
            for inner in vocab.spaced_words.finditer(low, start - 1, end):  # type: ignore[union-attr]
                e = entries[inner.lastgroup]  # type: ignore[index]
                found.append((start, Evidence(phrase, where, e.level, True, e.declared)))
            continue
        cue = cue_before and cue_before.search(low, max(0, start - 48), start)
        if cue:  # show the negation with the word: "not really urgent"
            start = cue.start()
        word = " ".join(original[start:end].split())
        found.append((start, Evidence(word, where, entry.level, bool(cue), entry.declared)))
    if vocab.unspaced is not None and not ascii_only:
        found.extend(_scan_unspaced(vocab, low, original, where))
        found.sort(key=lambda pair: pair[0])
    return tuple(e for _, e in found)


def _scan_unspaced(
    vocab: Vocabulary, low: str, original: str, where: str
) -> list[tuple[int, Evidence]]:
    """Han, kana and Hangul words, wherever they stand; cues before or after them."""
    entries = vocab.entries
    found: list[tuple[int, Evidence]] = []
    for m in vocab.unspaced.finditer(low):  # type: ignore[union-attr]
        start, end = m.start(), m.end()
        entry = entries[m.lastgroup]  # type: ignore[index]
        if entry.level == 0:  # a negation phrase ("緊急連絡先", "至急ではない")
            phrase = original[start:end]
            for inner in vocab.unspaced_words.finditer(low, start, end):  # type: ignore[union-attr]
                e = entries[inner.lastgroup]  # type: ignore[index]
                found.append((start, Evidence(phrase, where, e.level, True, e.declared)))
            continue
        before = vocab.unspaced_cue_before and vocab.unspaced_cue_before.search(
            low, max(0, start - 12), start
        )
        after = vocab.unspaced_cue_after and vocab.unspaced_cue_after.match(low, end)
        if before:
            start = before.start()
        if after:
            end = after.end()
        word = " ".join(original[start:end].split())
        negated = bool(before or after)
        found.append((start, Evidence(word, where, entry.level, negated, entry.declared)))
    return found


def infer(subject: str, body: str, headers: Mapping[str, str], vocab: Vocabulary) -> PriorityResult:
    """Priority of one message: subject over body, declared over words, headers +1 at most."""
    in_subject = scan(vocab, subject or "", "subject")
    in_body = scan(vocab, own_text(body or ""), "body")
    level = _choose(in_subject) or _choose(in_body) or DEFAULT_LEVEL
    from_headers = _header_evidence(headers)
    raised = bool(from_headers) and level > 1
    if raised:
        level -= 1
    header_evidence = tuple(Evidence(w, "header", level) for w in from_headers)
    return PriorityResult(level, in_subject + in_body + header_evidence, raised)


def _choose(evidence: Iterable[Evidence]) -> int | None:
    live = [e for e in evidence if not e.negated]
    stated = [e.level for e in live if e.declared]
    pool = stated or [e.level for e in live]
    return min(pool) if pool else None


def _header_evidence(headers: Mapping[str, str]) -> tuple[str, ...]:
    """Header values that ask for more urgency; low values are ignored on purpose."""
    found = []
    x_priority = str(headers.get("x-priority", "") or "").strip()
    if x_priority[:1] in ("1", "2"):
        found.append(f"X-Priority: {x_priority}")
    for name, label, value in (
        ("importance", "Importance", "high"),
        ("x-msmail-priority", "X-MSMail-Priority", "high"),
        ("priority", "Priority", "urgent"),
    ):
        if str(headers.get(name, "") or "").strip().lower() == value:
            found.append(f"{label}: {headers[name].strip()}")
    return tuple(found)
