"""Is this message part of a conversation we already hold?

Pure: the store is reached only through the `Threads` lookup passed in, so
replay and daemon decide the same way and a test can hand in a dict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from triage.message import Email
from triage.subjects import Subject


@dataclass(frozen=True, slots=True)
class TicketRef:
    """What threading needs to know about a stored ticket."""

    number: str
    requester: str
    participants: frozenset[str]  # requester, To/Cc of the opening message
    company: str | None = None


class Threads(Protocol):
    """What the pure core may ask of the store (the store implements it; tests use dicts)."""

    def ticket_for_message_ids(self, ids: tuple[str, ...]) -> TicketRef | None: ...

    def ticket_by_number(self, number: str) -> TicketRef | None: ...

    def ticket_for_our_message(self, ids: tuple[str, ...]) -> TicketRef | None: ...

    def bounced_since(self, address: str, since: datetime) -> bool: ...

    def acks_since(self, address: str, since: datetime) -> int: ...


@dataclass(frozen=True, slots=True)
class Thread:
    """The outcome: append to `ticket`, or open a new one (linked to `linked` if set)."""

    ticket: TicketRef | None
    linked: TicketRef | None
    why: str


def token_pattern(prefix: str) -> re.Pattern[str]:
    """`[#T-000123]` for prefix `T-`; digits only after the prefix."""
    return re.compile(r"\[#" + re.escape(prefix) + r"(\d{1,12})\]", re.IGNORECASE)


def ticket_number(prefix: str, n: int) -> str:
    return f"{prefix}{n:06d}"


def find_thread(
    email: Email,
    threads: Threads,
    prefix: str = "T-",
    free_mail: frozenset[str] = frozenset(),
    sender_company: str | None = None,
) -> Thread:
    """Decide whether `email` answers a stored ticket.

    Message ids are proof of a conversation (the sender saw the message);
    a subject token is not (numbers can be guessed), so a token alone only
    appends when the sender is on that ticket or at the same company.
    """
    ids = email.in_reply_to + tuple(
        i for i in reversed(email.references) if i not in email.in_reply_to
    )
    if ids:
        ref = threads.ticket_for_message_ids(ids)
        if ref is not None:
            return Thread(ref, None, f"In-Reply-To/References names a message of {ref.number}")
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
    sender = email.from_addr
    if sender in ref.participants or sender == ref.requester:
        return Thread(ref, None, f"subject token {number} from a participant of that ticket")
    if _same_company(sender, ref, free_mail, sender_company):
        return Thread(ref, None, f"subject token {number} from the requester's company")
    return Thread(
        None,
        ref,
        f"subject token {number}, but {sender} is not on that ticket: new ticket linked to it",
    )


def _same_company(
    sender: str, ref: TicketRef, free_mail: frozenset[str], sender_company: str | None
) -> bool:
    if sender_company and ref.company and sender_company == ref.company:
        return True
    domain = sender.rpartition("@")[2]
    return bool(domain) and domain not in free_mail and domain == ref.requester.rpartition("@")[2]
