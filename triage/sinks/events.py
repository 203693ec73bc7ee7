"""What happened, as the sinks receive it: event names, the `Event` value and its JSON body.

Pure: no clock, no randomness, no I/O. The caller passes the event's id and time, so the
same change always gives the same bytes, and a resend of one outbox row carries exactly
the body it carried the first time (a receiver that deduplicates on the delivery id sees
the same content under it).

The body is the Standard Webhooks payload shape, `{"type", "timestamp", "data"}`, with
keys sorted and no spaces: the bytes that are signed are the bytes that are sent.
"""

from __future__ import annotations

import hashlib
import json
from base64 import b32encode
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

TICKET_CREATED = "ticket.created"
TICKET_APPENDED = "ticket.appended"
TICKET_PRIORITY_CHANGED = "ticket.priority_changed"
TICKET_ASSIGNED = "ticket.assigned"
TICKET_NOTED = "ticket.noted"
TICKET_STATUS_CHANGED = "ticket.status_changed"
SLA_WARNING = "sla.warning"
SLA_BREACHED = "sla.breached"
MAILBOX_FAILING = "mailbox.failing"
MAILBOX_RECOVERED = "mailbox.recovered"
MESSAGE_QUARANTINED = "message.quarantined"

# Events about one ticket: their `data` holds the ticket's fields, and filters by
# priority, queue and VIP apply to them. Mailbox and quarantine events have none.
TICKET_EVENT_TYPES = (
    TICKET_CREATED,
    TICKET_APPENDED,
    TICKET_PRIORITY_CHANGED,
    TICKET_ASSIGNED,
    TICKET_NOTED,
    TICKET_STATUS_CHANGED,
    SLA_WARNING,
    SLA_BREACHED,
)
TICKET_EVENTS = frozenset(TICKET_EVENT_TYPES)
EVENT_TYPES = (*TICKET_EVENT_TYPES, MAILBOX_FAILING, MAILBOX_RECOVERED, MESSAGE_QUARANTINED)
# What a change people make (or a customer's reply reopening the ticket) adds to the ticket
# fields: who made it, and what it changed.
CHANGE_FIELDS: dict[str, tuple[str, ...]] = {
    TICKET_ASSIGNED: ("assignee", "previous_assignee", "by"),
    TICKET_NOTED: ("note", "by"),
    TICKET_STATUS_CHANGED: ("status", "previous_status", "by"),
}
DONE_STATES = frozenset({"resolved", "closed"})  # see Subscription.done_states
TEXT_MAX = 4000  # characters of a message's text an event carries (a PSA's description, a note)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, to the second; None stays None."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("a naive datetime has no zone; pass an aware one")
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    """The inverse of `iso` (accepts any offset)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened. `data` holds JSON values only (strings, numbers, lists)."""

    id: str  # unique per event (given by the caller, who owns randomness)
    type: str
    at: datetime
    data: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {self.type!r}; one of {list(EVENT_TYPES)}")
        if not self.id or "." in self.id or not self.id.isascii() or not self.id.isprintable():
            # Standard Webhooks signs "id.timestamp.body": a dot in the id would be ambiguous.
            raise ValueError(f"event id {self.id!r} must be printable ASCII without '.'")
        if self.at.tzinfo is None:
            raise ValueError("Event.at must be timezone-aware")

    def body(self) -> bytes:
        """The JSON body every HTTP sink that sends events as they are posts, byte-stable."""
        return json.dumps(
            {"type": self.type, "timestamp": iso(self.at), "data": dict(self.data)},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode("utf-8")

    def to_json(self) -> str:
        """For storing in an outbox row; `Event.from_json` gives the same event back."""
        return json.dumps(
            {"id": self.id, "type": self.type, "at": iso(self.at), "data": dict(self.data)},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Event:
        raw = json.loads(text)
        return cls(raw["id"], raw["type"], parse_iso(raw["at"]), raw.get("data") or {})

    @property
    def ticket(self) -> str | None:
        value = self.data.get("ticket")
        return value if isinstance(value, str) else None

    # -- named constructors ---------------------------------------------------------------

    @classmethod
    def for_ticket(
        cls,
        type: str,
        id: str,
        at: datetime,
        *,
        ticket: str,
        subject: str,
        priority: str | None,
        due: datetime | None,
        requester: str | None,
        requester_name: str = "",
        contact: str | None = None,
        company: str | None = None,
        queue: str | None = None,
        vip: bool = False,
        action: str = "ticket",
        reasons: Iterable[str] = (),
        message_id: str | None = None,
        text: str = "",
        previous_priority: str | None = None,
        sla: str | None = None,
        change: Mapping[str, object] | None = None,
    ) -> Event:
        """A ticket event: created, appended, priority changed, assigned, noted, status
        changed, SLA warning or breach.

        `text` is the message's text (cut to TEXT_MAX), for a PSA's description or note;
        `previous_priority` goes with ticket.priority_changed, `sla` (which deadline:
        "respond" or "resolve") with the SLA events, `change` (its keys: CHANGE_FIELDS)
        with assigned, noted and status changed.
        """
        if type not in TICKET_EVENTS:
            raise ValueError(f"{type!r} is not a ticket event")
        data: dict[str, object] = {
            "ticket": ticket,
            "subject": subject,
            "priority": priority,
            "due": iso(due),
            "requester": requester,
            "requester_name": requester_name,
            "contact": contact,
            "company": company,
            "queue": queue,
            "vip": bool(vip),
            "action": action,
            "reasons": list(reasons),
            "message_id": message_id,
            "text": text[:TEXT_MAX],
        }
        if type == TICKET_PRIORITY_CHANGED:
            data["previous_priority"] = previous_priority
        if type in (SLA_WARNING, SLA_BREACHED):
            data["sla"] = sla
        if type in CHANGE_FIELDS:
            given = change or {}
            for name in CHANGE_FIELDS[type]:
                value = given.get(name)
                data[name] = value[:TEXT_MAX] if isinstance(value, str) else value
        return cls(id, type, at, data)

    @classmethod
    def for_mailbox(
        cls,
        type: str,
        id: str,
        at: datetime,
        *,
        mailbox: str,
        host: str,
        kind: str | None = None,
        error: str | None = None,
        since: datetime | None = None,
        failures: int = 0,
    ) -> Event:
        """mailbox.failing (with the kind of failure and what the server said) or .recovered."""
        if type not in (MAILBOX_FAILING, MAILBOX_RECOVERED):
            raise ValueError(f"{type!r} is not a mailbox event")
        data = {
            "mailbox": mailbox,
            "host": host,
            "kind": kind,
            "error": error,
            "since": iso(since),
            "failures": failures,
        }
        return cls(id, type, at, data)

    @classmethod
    def quarantined(
        cls,
        id: str,
        at: datetime,
        *,
        source: str,
        message_id: str | None,
        error: str,
        mailbox: str | None = None,
    ) -> Event:
        """message.quarantined: a message triage could not process, kept aside."""
        data = {"source": source, "message_id": message_id, "error": error, "mailbox": mailbox}
        return cls(id, MESSAGE_QUARANTINED, at, data)


def delivery_id(event_id: str, sink: str) -> str:
    """The id one sink's delivery of one event carries, the same on every resend.

    Derived from the event's id and the sink's name, so an outbox row (one per event and
    sink) and anything rebuilt from it name the delivery alike; `msg_` and base32 keep it
    free of the dot that Standard Webhooks uses as its separator.
    """
    digest = hashlib.sha256(f"{event_id}\0{sink}".encode()).digest()[:20]
    return "msg_" + b32encode(digest).decode("ascii").lower().rstrip("=")


# -- subscriptions --------------------------------------------------------------------------

VIP_MODES = ("any", "only", "also")


@dataclass(frozen=True, slots=True)
class Subscription:
    """Which events a sink receives.

    `priorities` and `queues` (empty: any) narrow ticket events. `vip`: "any" (VIP or not,
    the default), "only" (VIP tickets only), "also" (VIP tickets pass even when their
    priority is not listed: "P1 or VIP" for an on-call channel). Events that are not about
    a ticket (mailbox, quarantine) pass every ticket filter. `done_states` False: a
    `ticket.status_changed` to resolved or closed is not for this sink (chat channels are
    told what needs someone, not what is finished).
    """

    events: frozenset[str]
    priorities: frozenset[str] = frozenset()
    queues: frozenset[str] = frozenset()
    vip: str = "any"
    done_states: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.events) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"unknown event types {unknown}")
        if self.vip not in VIP_MODES:
            raise ValueError(f"vip must be one of {list(VIP_MODES)}")

    def matches(self, event: Event) -> bool:
        if event.type not in self.events:
            return False
        if event.type not in TICKET_EVENTS:
            return True
        data = event.data
        if (
            event.type == TICKET_STATUS_CHANGED
            and not self.done_states
            and data.get("status") in DONE_STATES
        ):
            return False
        vip = bool(data.get("vip"))
        if self.queues and data.get("queue") not in self.queues:
            return False
        if self.vip == "only" and not vip:
            return False
        if self.priorities and data.get("priority") not in self.priorities:
            return self.vip == "also" and vip
        return True
