"""What happens to one message, and why: the value `decide` returns and the store writes.

`reasons` is the trace `triage explain` prints; `as_json` is the replay contract
(ARCHITECTURE.md, "Command-line contract").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from triage import instants
from triage.core import evidence as evidence_mod
from triage.core import sla as sla_mod
from triage.core.message import Email
from triage.core.returned import Returned


class Action(StrEnum):
    TICKET = "ticket"
    APPEND = "append"
    FILTERED = "filtered"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"
    # Only weak rules fired, on mail that shows a person: held for a person to look at.
    REVIEW = "review"


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to one message, and why (`triage explain` prints `reasons`)."""

    source: str
    action: Action
    message_key: str | None
    message_id: str | None
    reason: str | None = None
    category: str | None = None  # of the filter rule that fired (e.g. "spam")
    ticket: str | None = None
    linked_ticket: str | None = None
    priority: str | None = None
    level: int | None = None
    contact: str | None = None
    company: str | None = None
    requester: str | None = None
    requester_name: str = ""
    forwarded_by: str | None = None
    queue: str | None = None
    vip: bool = False
    status: str = "open"  # of a new ticket: open | pending-approval
    match: str = "none"
    verified: bool = False
    stranger: bool = False  # matched to no contact and no known company (see `_is_stranger`)
    due: datetime | None = None
    deadline: sla_mod.Deadline | None = None
    timezone: str | None = None  # the zone the deadline was computed in
    auto_reply: bool = False
    reply_suppressed: str | None = None
    bounce: Returned | None = None  # a bounce of one of our acknowledgements (linked_ticket)
    first_response: bool = False  # an agent's reply to the requester: the ticket is answered
    reopened: str | None = None  # the state (pending, resolved, closed) a customer's reply ends
    resumed_due: datetime | None = None  # the deadline once a paused clock runs again
    reasons: tuple[str, ...] = ()
    evidence: tuple[evidence_mod.Signal, ...] = ()  # weak rules and the signs weighed against them
    email: Email | None = field(default=None, repr=False, compare=False)

    @classmethod
    def duplicate(cls, source: str, email: Email) -> Decision:
        """The message key is stored already (or earlier in the batch): nothing is written."""
        return cls(
            source,
            Action.DUPLICATE,
            email.key,
            email.message_id,
            reasons=(f"duplicate: message key {email.key} is already stored",),
            email=email,
        )

    @classmethod
    def unreadable_again(cls, source: str, key: str) -> Decision:
        """Bytes that could not be read, and were recorded once already under `key`."""
        return cls(
            source,
            Action.DUPLICATE,
            key,
            None,
            reasons=("duplicate: the same unreadable bytes again",),
        )

    @classmethod
    def quarantined(
        cls, source: str, email: Email | None, key: str | None, reason: str | None, detail: str
    ) -> Decision:
        """A message the pipeline could not handle, kept under `key` with its reason code."""
        return cls(
            source,
            Action.QUARANTINED,
            key,
            email.message_id if email else None,
            reason=reason,
            reasons=(f"quarantined: {reason}: {detail}",),
            email=email,
        )

    def as_json(self) -> dict:
        """The replay contract's fields (ARCHITECTURE.md), plus a few extras."""
        return {
            "source": self.source,
            "message_id": self.message_id,
            "action": str(self.action),
            "reason": self.reason,
            "category": self.category,
            "ticket": self.ticket,
            "priority": self.priority,
            "contact": self.contact,
            "match": self.match,
            "due": instants.iso(self.due) if self.due else None,
            "auto_reply": self.auto_reply,
            "linked_ticket": self.linked_ticket,
            "verified": self.verified,
            "requester": self.requester,
            "forwarded_by": self.forwarded_by,
            "queue": self.queue,
            "vip": self.vip,
            "reply_suppressed": self.reply_suppressed,
            "evidence": [s.as_json() for s in self.evidence],
        }
