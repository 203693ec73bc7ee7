"""Where a reply quotes the message it answers, and whether it is a reply in a conversation.

Pure. A person answering someone writes above (or below) the message they answer,
introduced by their mail program's attribution line; the signs of a person
(triage/core/evidence.py) read the author's own part, not the quoted one. The
markers are data: the `quote_*` lists of rules/evidence.toml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from triage.core.filter_rules import normalise
from triage.core.message import Email

_ATTRIBUTION_WORDS = 30  # "On <date>, <name> <address> wrote:" is a line, not a paragraph
_ATTRIBUTION_CHARS = 300
_SEPARATOR_CHARS = 100  # "-----Original Message-----" and its like, with their dashes
_QUOTED = (">", "＞")
_COLONS = (":", "：")
_DASHES = "-_=*"
_LABEL = 24  # "From:", "Gesendet:", "送信日時:": a label opens its line
# The Message-IDs triage writes (triage/core/replies.py `render`, triage/core/digests.py),
# read by shape: `<T-000123.<16 hex>@domain>`, `<review-digest.<time>.<hex>@domain>`.
_OURS = re.compile(
    r"<(?:(?i:[a-z0-9._-]{0,16})\d+\.[0-9a-f]{16}|review-digest\.\d{14}\.[0-9a-f]+)@[^<>@\s]+>"
)


@dataclass(frozen=True, slots=True)
class QuoteMarkers:
    """How mail programs open a quoted message, normalised (rules/evidence.toml)."""

    attributions: tuple[str, ...] = ()  # verbs of "On <date>, <name> wrote:"
    separators: tuple[str, ...] = ()  # "-----Original Message-----" without its dashes
    header_from: tuple[str, ...] = ()  # Outlook's header block: "From:" ...
    header_sent: tuple[str, ...] = ()  # ... and "Sent:" within three lines


def quote_start(lines: list[str], markers: QuoteMarkers) -> int | None:
    """Where the quoted message begins among the non-empty `lines`, else None.

    Its opening line: an attribution that holds a date or an address (on it or, when a
    client wraps it, on the line before); a separator; or Outlook's header block, a
    From line with a Sent or Date line within the next three. `lines` are stripped and
    not empty.
    """
    for i, line in enumerate(lines):
        # Cheap tests on the raw line first: most lines of a message are none of these.
        if line.endswith(_COLONS) and len(line) <= _ATTRIBUTION_CHARS:
            text = normalise(line)
            if (
                len(text.split()) <= _ATTRIBUTION_WORDS
                and _names_any(text, markers.attributions)
                and any(ch.isdigit() or ch == "@" for ch in text + (lines[i - 1] if i else ""))
            ):
                return i
        if (
            line[0] in _DASHES
            and len(line) <= _SEPARATOR_CHARS
            and normalise(line).strip(_DASHES + " ") in markers.separators
        ):
            return i
        if (
            _labelled(line)
            and normalise(line[:_LABEL]).startswith(markers.header_from)
            and any(
                normalise(n[:_LABEL]).startswith(markers.header_sent) for n in lines[i + 1 : i + 4]
            )
        ):
            return i
    return None


def _labelled(line: str) -> bool:
    """The line opens with a word or two and a colon ("From:", "Envoyé :", "差出人：")."""
    found = [at for at in (line.find(":", 0, _LABEL), line.find("：", 0, _LABEL)) if at > 0]
    return bool(found) and line[: min(found)].replace(" ", "").isalpha()


def reply_in_conversation(email: Email, lines: list[str], quote: int | None) -> str:
    """What shows the message is a person's reply in a conversation, or ''.

    It names the message it answers (In-Reply-To, else the last References entry); that
    message is not one triage wrote (a robot answering our acknowledgement names it too,
    and a reply to one of our tickets is weighed by the store: `reply-to-ticket`); and the
    body quotes it below an attribution, with the author's own words above or below.
    """
    parent = (email.in_reply_to or email.references[-1:] or ("",))[0]
    if not parent or quote is None or _OURS.fullmatch(parent):
        return ""
    below = lines[quote + 1 :]
    bottom = any(not line.startswith(_QUOTED) for line in below) and any(
        line.startswith(_QUOTED) for line in below
    )
    if quote == 0 and not bottom:
        return ""  # a quote and nothing of its own
    return f"answers {parent}, quoting it after {lines[quote][:60]!r}"


def _names_any(text: str, words: tuple[str, ...]) -> bool:
    """One of `words` begins a word of `text` (Japanese, Chinese, Korean need no space)."""
    for word in words:
        cjk = ord(word[0]) >= 0x3000
        at = text.find(word)
        while at >= 0:
            if cjk or at == 0 or not text[at - 1].isalpha():
                return True
            at = text.find(word, at + 1)
    return False
