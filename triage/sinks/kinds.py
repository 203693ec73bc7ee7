"""From a `[[sink]]` table to the object that delivers, and what each would send (for a demo).

`make_sink` gives the HTTP sinks (webhook, connectwise, slack, teams). An `email` sink has no
object of its own: its alerts are mails, queued in the SMTP outbox like any other mail
(`messages.mail_text` gives subject and body), so one relay and one drainer carry them.

`preview` is what a sink would receive for a delivery, with nothing secret in it (no
signature, no key, no webhook URL): what `make demo` writes beside the acknowledgements.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from triage.sinks.base import Delivery, Sink
from triage.sinks.config import ConnectWiseSettings, SinkConfig, WebhookSettings
from triage.sinks.events import TICKET_CREATED
from triage.sinks.messages import alert, mail_text

# The HTTP sinks' modules (and httpx under them) are imported for the kinds configured:
# a daemon or replay without HTTP sinks does not pay for them at start.


def make_sink(
    config: SinkConfig, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> Sink | None:
    """The sink for `config`; None for an email sink (its mail goes through the SMTP outbox)."""
    if config.kind == "webhook":
        from triage.sinks.webhook import WebhookSink

        return WebhookSink(config, clock=clock)
    if config.kind == "connectwise":
        from triage.sinks.connectwise import ConnectWiseSink

        return ConnectWiseSink(config, clock=clock)
    if config.kind in ("slack", "teams"):
        from triage.sinks.chat import ChatSink

        return ChatSink(config, clock=clock)
    return None


def preview(config: SinkConfig, delivery: Delivery) -> dict:
    """What `config`'s sink would send for `delivery`: method, target, body. No secrets."""
    event = delivery.event
    if config.kind == "webhook":
        assert isinstance(config.settings, WebhookSettings)
        return {
            "method": "POST",
            "url": config.settings.url,
            "headers": {"webhook-id": delivery.id, "webhook-signature": "v1,<signed when sent>"},
            "body": json.loads(event.body()),
        }
    if config.kind == "connectwise":
        from triage.sinks.connectwise import note_body, ticket_body

        cw = config.settings
        assert isinstance(cw, ConnectWiseSettings)
        if event.type == TICKET_CREATED:
            return {
                "method": "POST",
                "url": f"{cw.api}/service/tickets",
                "body": ticket_body(event, cw),
            }
        return {
            "method": "POST",
            "url": f"{cw.api}/service/tickets/<id of {event.ticket}>/notes",
            "body": note_body(delivery, cw),
        }
    zone = ZoneInfo(config.zone)
    if config.kind in ("slack", "teams"):
        from triage.sinks.chat import chat_payload

        return {
            "method": "POST",
            "url": "<webhook url>",
            "body": chat_payload(config.kind, event, zone),
        }
    subject, body = mail_text(alert(event, zone), event.at, zone)
    return {"to": list(getattr(config.settings, "to", ())), "subject": subject, "body": body}
