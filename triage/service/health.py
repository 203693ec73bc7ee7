"""The daemon's view of each mailbox's health: the state row, failures, alerts, readiness.

What `triage status` reads (the `mailbox_state` rows), what systemd hears (READY=1 and the
STATUS= line through sd_notify), and the operator's alert and all-clear mails. A mailbox is
failing after a loud fault (login, TLS, secret, configuration, a stall) or
`alert_after_failures` failed sessions in a row, and healthy again only once a session files
mail, never on a login alone. A mixin of `Daemon` (triage/service/daemon.py).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from structlog.typing import FilteringBoundLogger

from triage.config import Config
from triage.config.endpoints import Mailbox
from triage.core import alerts
from triage.core.rules import Rules
from triage.service import delivering
from triage.service.notify import Notifier
from triage.store import mailboxes as mailbox_state
from triage.store.sqlite import Store

STATUS_EACH = 8  # mailboxes named one by one in systemd's STATUS= line; beyond, counts by state


@dataclass
class Health:
    """What `triage status` and the STATUS= line say about one mailbox."""

    state: str = "starting"
    failures: int = 0  # sessions in a row that failed before filing anything
    failing: bool = False
    logged_in_once: bool = False
    last_error: str = ""
    stalled_since: datetime | None = None
    alerts_sent: set[str] = field(default_factory=set)
    filed: bool = False  # this session has filed a batch (or found nothing to file)
    folders_found: bool = False  # a session found (or made) the folders; until an IMAP fault
    progress_at: datetime = field(default_factory=lambda: datetime.now(UTC))  # the stall clock
    standby: bool = False  # a shared store: another daemon holds this mailbox's lease


class HealthWatch:
    """`Daemon`'s health keeping: one `Health` per mailbox, the relay's last error, and the
    stall check that runs as its own task; uses `_sleep`."""

    config: Config
    rules: Rules
    store: Store
    notifier: Notifier
    log: FilteringBoundLogger
    outbox_wake: asyncio.Event
    stop: asyncio.Event
    health: dict[str, Health]
    relay_error: str | None
    ready_sent: bool

    def _filed(self, mb: Mailbox) -> None:
        """A batch is filed on the server (or nothing waits): the stall clock starts again, and
        the first time in a session, the failure count too."""
        health = self.health[mb.name]
        health.progress_at = datetime.now(UTC)
        if health.filed:
            return
        health.filed = True
        was_failing = health.failing
        if was_failing:  # said when it works again: filing mail, not a login
            self._recovered(mb, health, self.log.bind(mailbox=mb.name))
        health.failures, health.failing, health.last_error = 0, False, ""
        health.alerts_sent.clear()
        mailbox_state.update(self.store, mb.name, failures=0, failing=0, last_error="")
        if was_failing:
            self._status()

    async def _failed(self, mb: Mailbox, health: Health, logger, kind: str, message: str) -> None:
        health.failures += 1
        health.last_error = message
        logger.warning(
            "mailbox_connection_failed", kind=kind, error=message, attempt=health.failures
        )
        loud = (
            kind in ("auth", "tls", "secret", "stalled", "config")
            or health.failures >= self.config.daemon.alert_after_failures
        )
        fields: dict[str, object] = {
            "failures": health.failures,
            "last_error": message[:500],
            "state": "failing" if loud else "connecting",
        }
        if loud and not health.failing:
            health.failing = True
            fields["failing"] = 1
            fields["failing_since"] = mailbox_state.now_text()
            logger.error("mailbox_failing", kind=kind, error=message, failures=health.failures)
            self._alert(mb, kind, message)
        mailbox_state.update(self.store, mb.name, **fields)
        health.state = str(fields["state"])
        self._status()
        if kind in ("auth", "tls", "secret", "config"):
            self._maybe_ready()  # systemd should see us running and failing loudly, not hanging in start

    def _alert(self, mb: Mailbox, kind: str, message: str) -> None:
        """A mail to the operator, queued in the outbox like any other (once per failing spell),
        and the `mailbox.failing` deliveries of the sinks subscribed to it."""
        delivering.mailbox_event(
            self.store,
            self.rules.config,
            True,
            mb,
            kind=kind,
            error=message,
            failures=self.health[mb.name].failures,
        )
        now = datetime.now(UTC)
        self._queue_alert(
            alerts.mailbox_failing(self.config, mb, kind, message, now, secrets.token_hex(8))
        )

    def _recovered(self, mb: Mailbox, health: Health, logger) -> None:
        """A mailbox that was failing works again: said in the log, and the all-clear mailed."""
        since = mailbox_state.failing_since(self.store, mb.name)
        logger.info("mailbox_recovered", failures=health.failures, failing_since=since)
        delivering.mailbox_event(
            self.store, self.rules.config, False, mb, since=since, failures=health.failures
        )
        now = datetime.now(UTC)
        self._queue_alert(
            alerts.mailbox_recovered(
                self.config, mb, since, health.failures, now, secrets.token_hex(8)
            )
        )

    def _queue_alert(self, alert) -> None:
        if alert is not None:
            self.store.queue_alert(alert, datetime.now(UTC))
            self.outbox_wake.set()

    def _set(self, mb: Mailbox, health: Health, state: str) -> None:
        if health.state != state and not (health.failing and state == "connecting"):
            health.state = state
            mailbox_state.update(self.store, mb.name, state=state)
            self._status()

    def _maybe_ready(self) -> None:
        if not self.ready_sent and all(
            h.logged_in_once or h.failing or h.standby for h in self.health.values()
        ):
            self.ready_sent = True
            self.notifier.ready()
            self.log.info("daemon_ready")
        self._status()

    def _status(self) -> None:
        parts = []
        if len(self.health) > STATUS_EACH:  # counts by state, then the failing ones by name
            states = Counter(h.state for h in self.health.values() if not h.failing)
            counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
            parts.append(f"{len(self.health)} mailboxes: {counts or 'none working'}")
        for name, h in self.health.items():
            if h.failing or len(self.health) <= STATUS_EACH:
                parts.append(f"{name}: {'FAILING ' + h.last_error[:80] if h.failing else h.state}")
        if self.relay_error:
            parts.append(f"relay: FAILING {self.relay_error[:80]}")
        self.notifier.status("; ".join(parts) or "no mailboxes configured")

    async def _stall_checks(self) -> None:
        """A mailbox that holds mail while nothing is filed for a while is failing too.

        The clock runs from the last batch filed (or the last look that found nothing
        waiting, or the start), never from a login: a server that takes every login and
        refuses every move is stalled.
        """
        limit = self.config.daemon.stalled_minutes * 60
        while not self.stop.is_set():
            await self._sleep(min(60.0, limit / 4))
            now = datetime.now(UTC)
            for row in mailbox_state.rows(self.store):
                health = self.health.get(row["mailbox"])
                if health is None or health.standby or health.failing or not row.get("backlog"):
                    continue
                idle_for = (now - health.progress_at).total_seconds()
                if idle_for > limit:
                    mb = next(
                        m
                        for m in (*self.config.mailboxes, *self.config.graph_mailboxes)
                        if m.name == row["mailbox"]
                    )
                    await self._failed(
                        mb,
                        health,
                        self.log.bind(mailbox=mb.name),
                        "stalled",
                        f"{row['backlog']} message(s) waiting and nothing filed for {idle_for / 60:.0f} minutes",
                    )
