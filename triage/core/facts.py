"""What a batch needs to know of the past, as values: read once, then carried forward.

`decide` never asks the store a question. The engine computes what a batch
`needs` (keys, Message-IDs, ticket numbers, addresses), the store answers all
of it in one query (`triage.store.facts.read`), and each message is decided
against `Facts`. A message sees the ones before it in the same batch through
`Facts.after`, which returns the facts the next message is decided against:
the ticket it opened, its key, the acknowledgement queued for its sender.

The lookups answer exactly what the store's queries answered when `decide`
asked them one message at a time (first stored row wins, ISO text compared as
the store compares it), so a batch decides as the messages did one by one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from triage import instants
from triage.core.analysis import Analysis
from triage.core.conversation import TicketRef, ticket_number, token_pattern
from triage.core.decision import Action
from triage.core.replies import reply_address
from triage.core.returned import Returned
from triage.core.values import replaced

if TYPE_CHECKING:
    from triage.core.outgoing import Rendered

ACK_WINDOW = timedelta(hours=24)  # the daily acknowledgement limit counts this far back
OURS_MAX = 50  # Message-IDs of a bounce that are looked up (a report may list thousands)


def instant(value: datetime) -> str:
    """`value` as the store writes instants (UTC, ISO 8601, `Z`): facts compare that text."""
    return instants.iso(value)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def sql_lower(text: str) -> str:
    """`text` as SQLite's lower() gives it (ASCII letters only): recipients are compared so."""
    return text.translate(_ASCII_LOWER)


@dataclass(frozen=True, slots=True)
class Needs:
    """Everything the messages of a batch name that the store may know."""

    keys: frozenset[str] = frozenset()  # message keys, and the keys a reused Message-ID takes
    message_ids: frozenset[str] = frozenset()  # referenced, own, and named by bounces
    numbers: frozenset[str] = frozenset()  # ticket numbers in subject tokens
    addresses: frozenset[str] = frozenset()  # where acknowledgements would go


def needs(analyses: Iterable[Analysis], prefix: str, keys: bool = True) -> Needs:
    """What `analyses` need to be decided; `keys` False: no duplicate check (`explain`)."""
    wanted: set[str] = set()
    ids: set[str] = set()
    numbers: set[str] = set()
    addresses: set[str] = set()
    token = token_pattern(prefix)
    for a in analyses:
        e = a.email
        if a.raw_sha256:
            wanted.add(f"sha256:{a.raw_sha256}")
        if e is None:
            continue
        wanted.add(f"sha256:{e.sha256}")  # the key it takes if it is quarantined on the way
        wanted.add(e.key)
        for mark in (e.fingerprint, e.old_fingerprint):
            if mark:
                wanted.add(f"{e.key}#{mark}")
        ids.update(e.in_reply_to)
        ids.update(e.references)
        if e.message_id:
            ids.add(e.message_id)
        if a.returned is not None:
            ids.update(a.returned.message_ids[:OURS_MAX])
        found = token.search(e.subject)
        if found:
            numbers.add(ticket_number(prefix, int(found.group(1))))
        addresses.add(reply_address(e))
    return Needs(
        frozenset(wanted) if keys else frozenset(),
        frozenset(ids),
        frozenset(numbers),
        frozenset(addresses),
    )


@dataclass(frozen=True, slots=True)
class Sent:
    """What the outbox holds under one Message-ID (its first rows, as the store orders them)."""

    ticket: str | None  # the ticket of the first row with this Message-ID (None: an alert)
    acknowledged: tuple[str, str] | None  # (ticket, recipient in lower case) of the first ack


@dataclass(frozen=True, slots=True)
class Facts:
    """The past a batch is decided against; built by the store, or by hand in a test.

    Mappings are never changed in place: `after` returns new ones.
    """

    stored: Mapping[str, str] = field(default_factory=dict)  # key -> fingerprint ('' if none)
    threads: Mapping[str, str] = field(default_factory=dict)  # Message-ID -> ticket number
    sent: Mapping[str, Sent] = field(default_factory=dict)  # Message-ID -> our outbox rows
    tickets: Mapping[str, TicketRef] = field(default_factory=dict)  # number -> ticket
    bounced: Mapping[str, str] = field(default_factory=dict)  # address -> last permanent bounce
    acks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # address -> queued at
    next_ticket: int = 1  # the serial the next new ticket's number is made from
    wanted: Needs | None = None  # what the batch asks about (None: anything)

    @classmethod
    def empty(cls) -> Facts:
        """A store that holds nothing yet (a dry run's, a first start's)."""
        return cls()

    # -- what conversation and the loop guard ask (conversation.Threads) ----------------
    def ticket_for_message_ids(self, ids: tuple[str, ...]) -> TicketRef | None:
        """The ticket of the first of `ids` that names a stored message, or our mail on one."""
        for mid in ids:
            number = self.threads.get(mid)
            if number is None and mid in self.sent:
                number = self.sent[mid].ticket
            if number is not None:
                return self.tickets.get(number)
        return None

    def ticket_by_number(self, number: str) -> TicketRef | None:
        return self.tickets.get(number)

    def ticket_for_our_message(self, ids: tuple[str, ...]) -> TicketRef | None:
        """The ticket whose acknowledgement carried one of `ids` (bounces of our own mail)."""
        for mid in ids[:OURS_MAX]:
            sent = self.sent.get(mid)
            if sent is not None and sent.acknowledged is not None:
                return self.tickets.get(sent.acknowledged[0])
        return None

    def recipient_of_our_message(self, ids: tuple[str, ...]) -> str | None:
        """The address the acknowledgement carrying one of `ids` went to (lower case)."""
        for mid in ids[:OURS_MAX]:
            sent = self.sent.get(mid)
            if sent is not None and sent.acknowledged is not None:
                return sent.acknowledged[1]
        return None

    def sent_by_us(self, message_id: str) -> bool:
        """`message_id` is one we sent or queued: our own mail coming back."""
        return message_id in self.sent

    def bounced_since(self, address: str, since: datetime) -> bool:
        last = self.bounced.get(address.lower())
        return last is not None and last >= instant(since)

    def acks_since(self, address: str, since: datetime) -> int:
        start = instant(since)
        return sum(1 for at in self.acks.get(address, ()) if at >= start)

    # -- the next message's facts --------------------------------------------------------
    def after(self, rendered: Rendered, now: datetime) -> Facts:
        """The facts once `rendered` is written at `now`: what the next message sees.

        Facts read for a batch (`wanted` set) keep only what a message of that batch can
        ask about, so carrying them forward costs the same whatever the batch's size.
        """
        d = rendered.decision
        if d.action == Action.DUPLICATE or d.message_key is None:
            return self
        e = d.email
        changes: dict[str, object] = {}
        if self._asks("keys", d.message_key):
            changes["stored"] = {
                **self.stored,
                d.message_key: e.fingerprint if e is not None else "",
            }
        if e is not None and d.ticket and d.action in (Action.TICKET, Action.APPEND):
            named = bool(e.message_id) and self._asks("message_ids", e.message_id)
            if named and e.message_id not in self.threads:
                changes["threads"] = {**self.threads, e.message_id: d.ticket}
            if d.action == Action.TICKET:
                changes["next_ticket"] = self.next_ticket + 1
                if named or self._asks("numbers", d.ticket):
                    requester = d.requester or e.from_addr
                    participants = frozenset({e.from_addr, requester, *e.cc})
                    dl = d.deadline
                    ref = TicketRef(
                        d.ticket,
                        requester,
                        participants,
                        d.company,
                        d.status,
                        due=instant(d.due) if d.due else None,
                        policy=dl.policy if dl else None,
                        plan=dl.plan if dl else None,
                        priority=d.priority,
                        timezone=d.timezone,
                    )
                    changes["tickets"] = {**self.tickets, d.ticket: ref}
            elif (d.first_response or d.reopened) and d.ticket in self.tickets:
                ref = self.tickets[d.ticket]
                if d.first_response:
                    ref = replaced(ref, responded=True)
                if d.reopened:
                    ref = replaced(ref, status="open", closed_at=None, paused_at=None)
                    if d.resumed_due is not None:
                        ref = replaced(ref, due=instant(d.resumed_due))
                changes["tickets"] = {**self.tickets, d.ticket: ref}
        ack = rendered.ack
        if ack is not None and d.ticket and d.action == Action.TICKET:
            if ack.message_id not in self.sent and self._asks("message_ids", ack.message_id):
                mark = (d.ticket, sql_lower(ack.to))
                changes["sent"] = {**self.sent, ack.message_id: Sent(d.ticket, mark)}
            if self._asks("addresses", ack.to):
                queued = (*self.acks.get(ack.to, ()), instant(now))
                changes["acks"] = {**self.acks, ack.to: queued}
        b = d.bounce
        if b is not None and d.linked_ticket and b.recipient and b.permanent and self._asks_of(b):
            at = instant(now)
            last = max(self.bounced.get(b.recipient, at), at)  # stored as the decision names it
            changes["bounced"] = {**self.bounced, b.recipient: last}
        return replaced(self, **changes) if changes else self  # type: ignore[arg-type]

    def _asks_of(self, bounce: Returned) -> bool:
        """A message of the batch writes from the address this bounce silences."""
        recipient = bounce.recipient or ""
        return self.wanted is None or recipient in {a.lower() for a in self.wanted.addresses}

    def _asks(self, kind: str, value: str) -> bool:
        """A message of the batch names `value` (facts built by hand keep everything)."""
        return self.wanted is None or value in getattr(self.wanted, kind)
