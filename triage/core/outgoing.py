"""Step 4: what a decision sends, rendered before anything is written.

Pure: the ids that make a Message-ID unique come from the caller (the engine
draws them), so the same decision, rules, instant and ids give the same bytes.
The store writes a `Rendered` in one transaction, outbox rows included.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from triage.core.decision import Action, Decision
from triage.core.replies import Ack, AckIds, facts_for
from triage.core.replies import render as render_ack
from triage.core.rules import Rules


@dataclass(frozen=True, slots=True)
class Rendered:
    """A decision and what it sends: the acknowledgement, when one is due."""

    decision: Decision
    ack: Ack | None = None


def render(d: Decision, rules: Rules, at: datetime, ids: AckIds | None) -> Rendered:
    """`d` with its acknowledgement rendered (dated `at`) when it opens a ticket that gets one.

    `ids` may be None only when no acknowledgement is due (see `wants_ack`).
    """
    if not wants_ack(d):
        return Rendered(d)
    assert d.email is not None and d.ticket is not None and ids is not None
    facts = facts_for(d.email, d, rules.config)
    return Rendered(d, render_ack(facts, rules.templates, rules.config, at, ids))


def wants_ack(d: Decision) -> bool:
    """A new ticket whose acknowledgement no guard suppressed."""
    return d.action == Action.TICKET and d.auto_reply and d.email is not None and bool(d.ticket)
