"""Short alerts for people on call: one `Alert` per event, then as Slack, Teams or mail. Pure.

An alert says what happened in its title (priority, ticket number, subject), then the facts
someone paged at 04:26 needs: who asked, the company, when it is due in the sink's time
zone, and the top reason for the priority (the first `priority` line of the explain trace).

Subjects and names come from strangers' mail, so they are escaped for each format: Slack's
`&`, `<` and `>` (an unescaped `<!channel>` in a subject would page the whole channel), and
the Markdown characters Teams' Adaptive Cards render (a `[link](...)` in a subject would
become a link).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from triage.sinks.events import (
    MAILBOX_FAILING,
    MAILBOX_RECOVERED,
    MESSAGE_QUARANTINED,
    SLA_BREACHED,
    SLA_WARNING,
    TICKET_APPENDED,
    TICKET_ASSIGNED,
    TICKET_CREATED,
    TICKET_EVENTS,
    TICKET_NOTED,
    TICKET_PRIORITY_CHANGED,
    TICKET_STATUS_CHANGED,
    Event,
    parse_iso,
)

FIELD_MAX = 300  # characters of any one value shown
ADAPTIVE_CARD_VERSION = "1.4"


@dataclass(frozen=True, slots=True)
class Alert:
    title: str
    facts: tuple[tuple[str, str], ...]
    reason: str | None = None
    urgent: bool = False  # P1, VIP, a breach, a failing mailbox: shown in the attention colour

    def text(self) -> str:
        """Plain text: the title, one fact per line, the reason."""
        lines = [self.title, *(f"{k}: {v}" for k, v in self.facts)]
        if self.reason:
            lines.append(f"Why: {self.reason}")
        return "\n".join(lines)


def _short(value: object) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= FIELD_MAX else text[: FIELD_MAX - 1] + "…"


def when(value: str | None, zone: ZoneInfo) -> str:
    """An ISO time as people read it in `zone`: `Tue 10 Mar 2026 06:26 CET`."""
    if not value:
        return "none"
    local = parse_iso(value).astimezone(zone)
    return f"{local:%a %d %b %Y %H:%M} {local.tzname() or zone.key}"


def top_reason(reasons: object) -> str | None:
    """The first line of the trace about the priority, else the first line."""
    if not isinstance(reasons, list) or not reasons:
        return None
    for line in reasons:
        if isinstance(line, str) and line.lower().startswith("priority"):
            return _short(line)
    return _short(reasons[0])


def alert(event: Event, zone: ZoneInfo) -> Alert:
    """The on-call alert for `event`, times shown in `zone`."""
    d = event.data
    if event.type in TICKET_EVENTS:
        ticket, subject = _short(d.get("ticket") or "?"), _short(d.get("subject") or "(no subject)")
        priority, vip = d.get("priority") or "?", bool(d.get("vip"))
        tag = f"{priority}{' VIP' if vip else ''}"
        due = when(d.get("due"), zone)  # type: ignore[arg-type]
        by = _short(d.get("by") or "?")
        title = {
            TICKET_CREATED: f"{tag} ticket {ticket}: {subject}",
            TICKET_APPENDED: f"{tag} {ticket} has a new message: {subject}",
            TICKET_PRIORITY_CHANGED: f"{ticket} is now {priority} (was {d.get('previous_priority') or '?'}): {subject}",
            TICKET_ASSIGNED: f"{ticket} assigned to {_short(d.get('assignee') or 'nobody')} by {by}: {subject}",
            TICKET_NOTED: f"{ticket} has a note from {by}: {subject}",
            TICKET_STATUS_CHANGED: f"{ticket} is now {_short(d.get('status') or '?')} (was {_short(d.get('previous_status') or '?')}) by {by}: {subject}",
            SLA_WARNING: f"SLA warning, {tag} {ticket} due {due}: {subject}",
            SLA_BREACHED: f"SLA breached, {tag} {ticket} was due {due}: {subject}",
        }[event.type]
        who = d.get("requester") or "unknown"
        if d.get("requester_name"):
            who = f"{d['requester_name']} <{who}>"
        facts = [("Requester", _short(who))]
        if d.get("company"):
            facts.append(("Company", _short(d["company"])))
        if d.get("queue"):
            facts.append(("Queue", _short(d["queue"])))
        facts.append(("Due", due))
        if d.get("sla"):
            facts.append(("Deadline", _short(d["sla"])))
        if event.type == TICKET_NOTED:
            facts.append(("Note", _short(d.get("note") or "")))
        urgent = priority == "P1" or vip or event.type == SLA_BREACHED
        return Alert(title, tuple(facts), top_reason(d.get("reasons")), urgent)
    if event.type == MAILBOX_FAILING:
        facts = [("Server", _short(d.get("host") or "?"))]
        if d.get("error"):
            facts.append(("Error", _short(d["error"])))
        if d.get("since"):
            facts.append(("Since", when(d["since"], zone)))  # type: ignore[arg-type]
        kind = f" ({d['kind']})" if d.get("kind") else ""
        return Alert(
            f"Mailbox {_short(d.get('mailbox'))} is failing{kind}", tuple(facts), None, True
        )
    if event.type == MAILBOX_RECOVERED:
        facts = [("Server", _short(d.get("host") or "?"))]
        if d.get("since"):
            facts.append(("Failing since", when(d["since"], zone)))  # type: ignore[arg-type]
        if d.get("failures"):
            facts.append(("Failed attempts", str(d["failures"])))
        return Alert(f"Mailbox {_short(d.get('mailbox'))} has recovered", tuple(facts))
    if event.type == MESSAGE_QUARANTINED:
        facts = [("Source", _short(d.get("source") or "?"))]
        if d.get("message_id"):
            facts.append(("Message-ID", _short(d["message_id"])))
        facts.append(("Error", _short(d.get("error") or "?")))
        return Alert("A message was quarantined", tuple(facts))
    raise ValueError(f"no alert for {event.type!r}")


# -- Slack: incoming webhook JSON (text as the notification fallback, blocks as shown) --------


def slack_escape(text: str) -> str:
    """Slack's three control characters in message text (mrkdwn and plain alike)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(a: Alert) -> dict:
    title = slack_escape(a.title)
    facts = "\n".join(f"*{slack_escape(k)}:* {slack_escape(v)}" for k, v in a.facts)
    blocks: list[dict] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": facts}},
    ]
    if a.reason:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"Why: {slack_escape(a.reason)}"}],
            }
        )
    return {
        "text": slack_escape(a.text()),
        "blocks": blocks,
        "unfurl_links": False,
        "unfurl_media": False,
    }


# -- Teams: an Adaptive Card message (the format Workflows webhooks accept; legacy connectors too)

_MARKDOWN = re.compile(r"([\\`*_\[\]])")


def teams_escape(text: str) -> str:
    """A backslash before each character that makes emphasis, code or a link in Adaptive Card
    Markdown (CommonMark's escape): `[pay here](https://...)` in a subject stays text."""
    return _MARKDOWN.sub(r"\\\1", text)


def teams_payload(a: Alert) -> dict:
    body: list[dict] = [
        {
            "type": "TextBlock",
            "text": teams_escape(a.title),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
            **({"color": "Attention"} if a.urgent else {}),
        },
        {
            "type": "FactSet",
            "facts": [{"title": k, "value": teams_escape(v)} for k, v in a.facts],
        },
    ]
    if a.reason:
        body.append(
            {
                "type": "TextBlock",
                "text": f"Why: {teams_escape(a.reason)}",
                "isSubtle": True,
                "wrap": True,
            }
        )
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": ADAPTIVE_CARD_VERSION,
                    "body": body,
                },
            }
        ],
    }


# -- mail to on-call: a subject and a plain-text body, queued through the SMTP outbox --------


def mail_text(a: Alert, at: datetime, zone: ZoneInfo) -> tuple[str, str]:
    """(subject, body) of the on-call mail for an alert raised at `at`."""
    local = at.astimezone(zone)
    body = (
        a.text() + f"\n\nRaised {local:%a %d %b %Y %H:%M} {local.tzname() or zone.key} by triage.\n"
    )
    return f"triage: {a.title}", body
