"""Mail to on-call (`kind = "email"`): the same short alerts as chat, as plain-text mail through
the configured [smtp] relay.

The Message-ID is derived from the delivery's id, so a resend after a crash between the
relay's acceptance and our mark carries the same Message-ID. A relay that fails (no
connection, TLS, login) is a retry; a recipient refused for good is a permanent failure.
Each recipient in `to` gets one mail; a retry sends to each again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from triage.config import Config
from triage.core import alerts
from triage.sinks.base import Delivery, Outcome
from triage.sinks.client import Pace
from triage.sinks.config import EmailSettings, SinkConfig
from triage.sinks.events import Subscription
from triage.sinks.messages import alert, mail_text
from triage.sinks.outbox import sender_for
from triage.sinks.smtp import RelayError, RowError, stamped


class MailSink:
    """Sends each event's alert to the sink's `to` addresses through the SMTP relay."""

    kind = "email"

    def __init__(
        self,
        config: SinkConfig,
        triage_config: Config,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not isinstance(config.settings, EmailSettings):
            raise TypeError(f"{config.name}: not an email sink")
        if triage_config.smtp is None and triage_config.graph_sending is None:
            raise TypeError(f"{config.name}: an email sink needs [smtp]")
        self.config = config
        self.name = config.name
        self.subscription: Subscription = config.subscription
        self.to = config.settings.to
        self.triage_config = triage_config
        self.sender = sender_for(triage_config)  # the relay, or Graph's sendMail
        self.zone = ZoneInfo(config.zone)
        self.clock = clock
        self.pace = Pace(config.rate_limit)

    async def deliver(self, delivery: Delivery) -> Outcome:
        event = delivery.event
        subject, body = mail_text(alert(event, self.zone), event.at, self.zone)
        await self.pace.wait()
        session = self.sender.session()
        try:
            for n, to in enumerate(self.to):
                now = self.clock()
                ack = alerts.render(
                    self.triage_config, to, subject, body, now, f"{delivery.id}.{n}"
                )
                await session.send(to, stamped(ack.raw, now, self.sender.domain))
        except RelayError as exc:
            return Outcome.retry(f"relay: {exc.said}")
        except RowError as exc:
            return Outcome.failed(exc.said) if exc.permanent else Outcome.retry(exc.said)
        finally:
            await session.close()
        return Outcome.sent(f"mailed to {', '.join(self.to)}")

    async def aclose(self) -> None:
        return None
