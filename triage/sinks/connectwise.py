"""ConnectWise Manage (PSA) service tickets (`kind = "connectwise"`), over its REST API 3.0.

`ticket.created` becomes a service ticket (POST /service/tickets: summary, initialDescription,
board, company, priority, status, the requester as the ticket's contact e-mail and name);
`ticket.appended` becomes a note on it (POST /service/tickets/{id}/notes), and so do
`ticket.noted` (an internal note) and `ticket.status_changed` (an internal note saying
who moved it where: the PSA ticket's own status is not changed, since a board's statuses
are its own and are not mapped). Every request
carries `Authorization: Basic base64(companyId+publicKey:privateKey)`, the integration's
`clientId` header and the API version in `Accept`.

Exactly one PSA ticket per triage ticket, even after a crash between ConnectWise's 201 and
our mark: our ticket number goes in the ticket's `externalXRef` (the field the ticket model
provides for a reference in another system: up to 100 characters, filterable, and needing
no custom field set up on the board), and is looked up (GET /service/tickets with
`conditions=externalXRef="T-000123"`) before creating. A note carries its delivery id on its
last line, and the ticket's recent notes are read before adding it, for the same reason.

Our priorities map to the board's priority ids (`priority_map`), and a contact's company to
a ConnectWise company identifier (`company_map`, else `default_company`).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import httpx

from triage.config.endpoints import Secret, SecretError
from triage.sinks.base import Delivery, Outcome, Status, classify
from triage.sinks.client import Answer, HttpSink, exchange, unreadable_secret
from triage.sinks.config import CONNECTWISE_EVENTS, ConnectWiseSettings, SinkConfig
from triage.sinks.events import (
    TICKET_CREATED,
    TICKET_NOTED,
    TICKET_STATUS_CHANGED,
    Event,
)

SUMMARY_MAX = 100
CONTACT_NAME_MAX = 62
EMAIL_MAX = 250
NOTES_READ = 100  # the most recent notes searched for a delivery's mark
_TICKET = re.compile(r"[A-Za-z0-9_-]{1,100}")


class ConnectWiseSink(HttpSink):
    """Creates and annotates ConnectWise Manage service tickets."""

    kind = "connectwise"

    def __init__(
        self,
        config: SinkConfig,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not isinstance(config.settings, ConnectWiseSettings):
            raise TypeError(f"{config.name}: not a connectwise sink")
        super().__init__(config, clock=clock, client=client)
        self.cw = config.settings
        self._auth: str | None = None

    # -- requests ---------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        if self._auth is None:
            public = self.cw.public_key
            public_text = public.reveal() if isinstance(public, Secret) else public
            user = f"{self.cw.company_id}+{public_text}:{self.cw.private_key.reveal()}"
            self._auth = "Basic " + base64.b64encode(user.encode()).decode("ascii")
        return {
            "authorization": self._auth,
            "clientid": self.cw.client_id,
            "accept": f"application/vnd.connectwise.com+json; version={self.cw.api_version}",
            "content-type": "application/json",
        }

    async def _call(
        self, method: str, path: str, body: object = None, params: dict | None = None
    ) -> Answer | Outcome:
        await self.pace.wait()
        return await exchange(
            self.client,
            method,
            self.cw.api + path,
            total=self.config.timeout,
            content=None if body is None else json.dumps(body, ensure_ascii=False).encode(),
            headers=self._headers(),
            params=params,
            what=f"{method} {path}",
        )

    def _judge(self, answer: Answer, what: str) -> Outcome:
        return classify(answer.code, answer.headers, answer.body[:2000], self.clock(), what)

    async def _list(self, path: str, params: dict) -> list[dict] | Outcome:
        answer = await self._call("GET", path, params=params)
        if isinstance(answer, Outcome):
            return answer
        outcome = self._judge(answer, f"GET {path}")
        if not outcome.ok:
            return outcome
        try:
            found = json.loads(answer.body)
        except ValueError:
            found = None
        if not isinstance(found, list):
            return Outcome.retry(
                f"GET {path}: the answer is not a JSON list: {answer.body[:200]!r}"
            )
        return [item for item in found if isinstance(item, dict)]

    async def find(self, ticket: str) -> int | None | Outcome:
        """The id of the ConnectWise ticket carrying our `ticket` number, if any."""
        found = await self._list(
            "/service/tickets",
            {
                "conditions": f'externalXRef="{ticket}"',
                "fields": "id",
                "orderBy": "id asc",
                "pageSize": "2",
            },
        )
        if isinstance(found, Outcome):
            return found
        ids = [item["id"] for item in found if isinstance(item.get("id"), int)]
        return min(ids) if ids else None

    # -- delivery ---------------------------------------------------------------------------

    async def deliver(self, delivery: Delivery) -> Outcome:
        event = delivery.event
        ticket = event.ticket
        if event.type not in CONNECTWISE_EVENTS:
            return Outcome.failed(
                f"{self.name}: a connectwise sink takes {', '.join(CONNECTWISE_EVENTS)},"
                f" not {event.type}"
            )
        if ticket is None or not _TICKET.fullmatch(ticket):
            return Outcome.failed(f"{self.name}: the event names no usable ticket ({ticket!r})")
        try:
            self._headers()
        except SecretError as exc:
            return unreadable_secret(exc, f"{self.name}: ConnectWise key")
        found = await self.find(ticket)
        if isinstance(found, Outcome):
            return found
        if event.type == TICKET_CREATED:
            if found is not None:  # created before, its 201 lost: never a second one
                return Outcome.sent(
                    f"ConnectWise ticket {found} already carries {ticket}", remote=str(found)
                )
            return await self._create(event)
        if found is None:
            return Outcome.retry(
                f"no ConnectWise ticket carries {ticket} yet (its ticket.created is not delivered)"
            )
        return await self._note(found, delivery)

    async def _create(self, event: Event) -> Outcome:
        answer = await self._call("POST", "/service/tickets", ticket_body(event, self.cw))
        if isinstance(answer, Outcome):
            return answer
        outcome = self._judge(answer, "POST /service/tickets")
        if not outcome.ok:
            return outcome
        made = _id_of(answer.body)
        return Outcome.sent(outcome.said[:80], outcome.code, str(made) if made else None)

    async def _note(self, cw_ticket: int, delivery: Delivery) -> Outcome:
        path = f"/service/tickets/{cw_ticket}/notes"
        recent = await self._list(
            path, {"orderBy": "id desc", "pageSize": str(NOTES_READ), "fields": "id,text"}
        )
        if isinstance(recent, Outcome):
            return recent
        for note in recent:
            if delivery.id in str(note.get("text") or ""):
                return Outcome.sent(
                    f"note {note.get('id')} already carries {delivery.id}", remote=str(cw_ticket)
                )
        answer = await self._call("POST", path, note_body(delivery, self.cw))
        if isinstance(answer, Outcome):
            return answer
        outcome = self._judge(answer, f"POST {path}")
        if outcome.status is Status.SENT:
            return Outcome.sent(outcome.said[:80], outcome.code, str(cw_ticket))
        return outcome

    async def aclose(self) -> None:
        await self.client.aclose()


# -- pure: what is sent ----------------------------------------------------------------------


def company_of(company: object, cw: ConnectWiseSettings) -> str:
    """The ConnectWise company identifier for a contact's company (case-insensitive)."""
    if isinstance(company, str) and company.casefold() in cw.companies:
        return cw.companies[company.casefold()]
    return cw.default_company


def ticket_body(event: Event, cw: ConnectWiseSettings) -> dict:
    """The POST /service/tickets body for a ticket.created event."""
    d = event.data
    ticket = str(d.get("ticket"))
    subject = " ".join(str(d.get("subject") or "(no subject)").split())
    summary = f"[{ticket}] {subject}"
    body: dict[str, object] = {
        "summary": summary if len(summary) <= SUMMARY_MAX else summary[: SUMMARY_MAX - 1] + "…",
        "externalXRef": ticket,
        "board": {"id": cw.board},
        "company": {"identifier": company_of(d.get("company"), cw)},
        "initialDescription": _description(d),
    }
    priority = d.get("priority")
    if isinstance(priority, str) and priority in cw.priorities:
        body["priority"] = {"id": cw.priorities[priority]}
    if cw.status is not None:
        body["status"] = {"id": cw.status}
    requester = d.get("requester")
    if isinstance(requester, str) and len(requester) <= EMAIL_MAX:
        body["contactEmailAddress"] = requester
    name = d.get("requester_name")
    if isinstance(name, str) and name.strip():
        body["contactName"] = name.strip()[:CONTACT_NAME_MAX]
    return body


def _description(data: Mapping[str, object]) -> str:
    lines = [str(data.get("text") or "").strip() or "(no text)", "", "—"]
    lines.append(
        f"triage {data.get('ticket')}, {data.get('priority') or 'no priority'}, due {data.get('due') or 'none'}"
    )
    if data.get("requester"):
        lines.append(f"From: {data.get('requester')}")
    reasons = data.get("reasons")
    for reason in reasons if isinstance(reasons, list) else ():
        lines.append(f"- {reason}")
    return "\n".join(lines)


def note_body(delivery: Delivery, cw: ConnectWiseSettings) -> dict:
    """The POST .../notes body for ticket.appended (filed as `note_type` says),
    ticket.noted and ticket.status_changed (always internal: they are the desk's own); its
    last line carries the delivery id, so a resend finds it."""
    event = delivery.event
    d = event.data
    internal = cw.note_type != "discussion"
    if event.type == TICKET_NOTED:
        note = str(d.get("note") or "").strip() or "(no text)"
        head, internal = f"Note by {d.get('by') or 'unknown'}:\n\n{note}", True
    elif event.type == TICKET_STATUS_CHANGED:
        head = (
            f"Status in triage: {d.get('previous_status') or '?'} -> {d.get('status') or '?'}"
            f" by {d.get('by') or 'unknown'}"
        )
        internal = True
    else:
        text = str(d.get("text") or "").strip() or "(no text)"
        head = f"New message from {d.get('requester') or 'unknown sender'}:\n\n{text}"
    body: dict[str, object] = {
        "text": f"{head}\n\n— triage {d.get('ticket')}, delivery {delivery.id}",
    }
    body["internalAnalysisFlag" if internal else "detailDescriptionFlag"] = True
    return body


def _id_of(raw: bytes) -> int | None:
    try:
        made = json.loads(raw)
    except ValueError:
        return None
    value = made.get("id") if isinstance(made, dict) else None
    return value if isinstance(value, int) else None
