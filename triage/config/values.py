"""The configuration as a frozen value, with the shipped defaults.

Zero configuration works: with no file the shipped rules, `./triage.db`, the
`connectwise` policy on plan `standard` in UTC, and tickets for unknown senders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from triage.config import endpoints
from triage.core.values import by_position
from triage.errors import ConfigError

if TYPE_CHECKING:
    from triage.config.storage import Database
    from triage.sinks.config import SinkConfig
    from triage.sinks.graph_mail import GraphSending
    from triage.sources.graph import GraphMailbox


def shipped_rules() -> Path:
    """rules/ inside an installed wheel, else the checkout's top-level rules/."""
    package = Path(__file__).resolve().parent.parent  # triage/
    for candidate in (package / "rules", package.parent / "rules"):
        if (candidate / "filters.toml").is_file():
            return candidate
    raise ConfigError(package, "rules", "the shipped rules/ folder is missing", "reinstall triage")


@by_position
@dataclass(frozen=True, slots=True)
class Queue:
    """Mail sent to `address` lands in queue `name`, with its own plan and priority."""

    name: str
    address: str
    plan: str | None = None
    priority: str | None = None  # the policy's label or P<n>; forces the ticket's priority


@dataclass(frozen=True, slots=True)
class Config:
    path: str = "(defaults)"
    rules_dir: Path = field(default_factory=shipped_rules)
    db: Path = Path("triage.db")
    # [store] url: a PostgreSQL database instead of `db` (triage/config/storage.py)
    database: Database | None = None
    own_domains: frozenset[str] = frozenset({"triage.invalid"})
    support_address: str = "support@triage.invalid"
    display_name: str = ""  # [identity] display_name: From: "name <support_address>" of acks
    signature: str = ""  # [replies] signature: $signature in the acknowledgement templates
    emergency_phone: str = ""  # [replies] emergency_phone: $emergency_phone and $emergency
    ticket_prefix: str = "T-"
    policy: str = "connectwise"
    plan: str | None = None  # None: the policy's own default plan (connectwise: standard)
    timezone: str = "UTC"
    unknown_senders: str = "ticket"  # ticket | hold | ignore
    # Most urgent priority for a sender matched to no contact and no known company (None: off).
    unknown_ceiling: str | None = None
    fuzzy_threshold: float = 92.0
    vip_raise: int = 1  # Priority Connect: levels a VIP's ticket is raised
    agents: frozenset[str] = frozenset()  # staff addresses whose hand-forwards name the customer
    # Authentication-Results written by our own boundary (lowercase); empty: the topmost only
    authserv_ids: frozenset[str] = frozenset()
    queues: tuple[Queue, ...] = ()
    never_reply: tuple[str, ...] = ("mailer-daemon", "postmaster", "abuse", "noreply", "no-reply")
    bounce_days: int = 60  # no acknowledgement to an address whose last one bounced permanently
    max_acks_per_day: int = 5  # per address, in any 24 hours
    hold_notice: bool = False  # send the held.txt notice to senders held for approval
    # [tickets] reopen_days: a customer's reply to a ticket closed longer ago opens a new one
    reopen_days: int = 14
    max_bytes: int = 25 * 1024 * 1024
    contacts_file: Path | None = None
    mailboxes: tuple[endpoints.Mailbox, ...] = ()
    smtp: endpoints.Smtp | None = None
    # [[mailbox]] kind = "graph" (triage.config.graph); [smtp] kind = "graph" sends through it
    graph_mailboxes: tuple[GraphMailbox, ...] = ()
    graph_sending: GraphSending | None = None
    daemon: endpoints.Daemon = field(default_factory=endpoints.Daemon)
    # [[sink]] tables: where events go (triage.sinks.config); none by default
    sinks: tuple[SinkConfig, ...] = ()

    @property
    def filters_file(self) -> Path:
        return self.rules_dir / "filters.toml"

    @property
    def priority_file(self) -> Path:
        return self.rules_dir / "priority.toml"

    @property
    def sla_dir(self) -> Path:
        return self.rules_dir / "sla"
