"""Is this message part of a conversation we already hold?

Pure: the past is reached only through the `Threads` lookups passed in, which
`Facts` answers from values read once per batch, so replay and daemon decide
the same way and a test can hand in a dict.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from triage.core.message import Email
from triage.core.subjects import Subject


@dataclass(frozen=True, slots=True)
class TicketRef:
    """What threading needs to know about a stored ticket."""

    number: str
    requester: str
    participants: frozenset[str]  # requester, To/Cc of the opening message
    company: str | None = None
    # Its state (triage/core/lifecycle.py); instants as the store writes them (ISO 8601).
    status: str = "open"
    closed_at: str | None = None  # when it was last closed
    responded: bool = False  # its first response is recorded
    paused_at: str | None = None  # its response clock paused (pending)
    due: str | None = None  # its response deadline, and what it was computed on:
    policy: str | None = None
    plan: str | None = None
    priority: str | None = None
    timezone: str | None = None


class Threads(Protocol):
    """What the pure core may ask of the past: `core.facts.Facts` answers it from values
    read once per batch (tests use dicts)."""

    def ticket_for_message_ids(self, ids: tuple[str, ...]) -> TicketRef | None: ...

    def ticket_by_number(self, number: str) -> TicketRef | None: ...

    def ticket_for_our_message(self, ids: tuple[str, ...]) -> TicketRef | None: ...

    def recipient_of_our_message(self, ids: tuple[str, ...]) -> str | None: ...

    def bounced_since(self, address: str, since: datetime) -> bool: ...

    def acks_since(self, address: str, since: datetime) -> int: ...

    def sent_by_us(self, message_id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Thread:
    """The outcome: append to `ticket`, or open a new one (linked to `linked` if set)."""

    ticket: TicketRef | None
    linked: TicketRef | None
    why: str


@functools.lru_cache(maxsize=8)
def token_pattern(prefix: str) -> re.Pattern[str]:
    """`[#T-000123]` for prefix `T-`; digits only after the prefix (built once per prefix:
    it is asked for at every message)."""
    return re.compile(r"\[#" + re.escape(prefix) + r"(\d{1,12})\]", re.IGNORECASE)


def ticket_number(prefix: str, n: int) -> str:
    return f"{prefix}{n:06d}"


def find_thread(
    email: Email,
    threads: Threads,
    prefix: str = "T-",
    company: str | None = None,
    forged: bool = False,
    agent: bool = False,
) -> Thread:
    """Decide whether `email` adds to a stored ticket, or opens a new one linked to it.

    In-Reply-To/References naming a stored message, or the subject token, find the
    ticket. Neither is a right to add to it: a Message-ID proves only that the sender
    saw a message (anyone it was forwarded to has), and ticket numbers can be guessed.
    The message is appended when its From is on that ticket (requester, or a participant
    of the opening message), or when `company` (the company the sender is shown to
    belong to: see `routing.vouched_company`) is the ticket's; never when the From
    failed authentication (`forged`). Otherwise it opens a new ticket linked to it.
    `agent`: the From is one of our agents and authenticated (`routing.is_agent`): our
    own people answer any ticket.
    """
    ids = email.in_reply_to + tuple(
        i for i in reversed(email.references) if i not in email.in_reply_to
    )
    ref = threads.ticket_for_message_ids(ids) if ids else None
    if ref is not None:
        how = f"In-Reply-To/References names a message of {ref.number}"
    else:
        found = token_pattern(prefix).search(email.subject)
        if not found:
            why = "no reference to a stored message and no ticket token"
            prefixes = Subject.parse(email.subject).prefixes
            if prefixes:  # say so: a subject is no proof, so "AW: Drucker" alone opens a ticket
                why += f" (the subject starts {': '.join(prefixes)}:, which alone proves nothing)"
            return Thread(None, None, why)
        number = ticket_number(prefix, int(found.group(1)))
        ref = threads.ticket_by_number(number)
        if ref is None:
            return Thread(None, None, f"subject token {number} names no ticket")
        how = f"subject token {number}"
    sender = email.from_addr
    if forged:
        return Thread(
            None,
            ref,
            f"{how}, but the From failed authentication: never appended; new ticket linked to it",
        )
    if agent:
        return Thread(ref, None, f"{how}, from our agent {sender} (authenticated)")
    if sender in ref.participants or sender == ref.requester:
        return Thread(ref, None, f"{how}, from a participant of that ticket")
    if company and ref.company and company == ref.company:
        return Thread(
            ref, None, f"{how}, from a sender shown to be of {company} (contact or domain)"
        )
    return Thread(
        None,
        ref,
        f"{how}, but {sender} is not on that ticket nor shown to be of its company: "
        "new ticket linked to it",
    )
