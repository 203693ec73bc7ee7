"""A message from a person: append it to its ticket, or open one with a priority and a deadline.

Pure: the conversation and the sender's history come from `Facts`; the clock is
`now`, passed in. Every step adds its line to the reasons `triage explain` prints.
"""

from __future__ import annotations

from datetime import datetime

from triage.config import Queue
from triage.core import contacts as contacts_mod
from triage.core import lifecycle, routing
from triage.core import sla as sla_mod
from triage.core.analysis import Analysis
from triage.core.conversation import find_thread, ticket_number
from triage.core.decision import Action, Decision
from triage.core.facts import Facts
from triage.core.message import Email
from triage.core.replies import history_guard, reply_address, reply_guard
from triage.core.rules import Rules
from triage.core.values import replaced


def ticket_or_append(
    analysis: Analysis, email: Email, base: Decision, rules: Rules, facts: Facts, now: datetime
) -> Decision:
    """Thread, priority, the unknown-sender policy, the deadline and the acknowledgement guard.

    A new ticket takes its number from `facts.next_ticket`, so the acknowledgement can be
    rendered before anything is written.
    """
    config, policy = rules.config, rules.policy
    match = analysis.match or contacts_mod.Match.none()
    requester = analysis.requester or routing.Requester(
        email.from_addr, email.from_name, None, "From"
    )
    queue = analysis.queue
    auth = analysis.auth or routing.authentication(email, config)
    agent = routing.is_agent(email, config, auth)
    reasons = [
        f"requester: {requester.why}",
        f"authentication: {auth.state} — {auth.why}",
        f"contact: {match.kind} — {match.why}",
    ]
    thread = find_thread(
        email,
        facts,
        config.ticket_prefix,
        company=routing.vouched_company(match, auth),
        forged=auth.failed,
        agent=agent,
    )
    reasons.append(f"conversation: {thread.why}")
    reply = lifecycle.Reply(thread)
    if thread.ticket is not None and not agent:
        reply = lifecycle.after_reply(
            thread, now, config.reopen_days, email.from_addr, rules.policies
        )
        thread = reply.thread
        if reply.why:
            reasons.append(f"lifecycle: {reply.why}")
    stranger = _is_stranger(match, auth)
    label, level = _priority(analysis, match, queue, policy, config.vip_raise, reasons)
    if stranger and config.unknown_ceiling is not None:
        label, level = _ceiling(label, level, policy, config.unknown_ceiling, reasons)
    fields = dict(
        priority=label,
        level=level,
        contact=match.contact.email if match.contact else None,
        company=match.company,
        match=match.kind,
        verified=match.verified,
        stranger=stranger,
        requester=requester.address,
        requester_name=requester.name,
        forwarded_by=requester.forwarded_by,
        queue=queue.name if queue else None,
        vip=bool(match.vip and match.verified),
    )
    if thread.ticket is not None:
        answered, why = lifecycle.first_response(email, thread.ticket, agent)
        if why:
            reasons.append(f"first response: {why}")
        reasons.append("no acknowledgement for an appended reply")
        return replaced(
            base,
            action=Action.APPEND,
            ticket=thread.ticket.number,
            first_response=answered,
            reopened=reply.reopened,
            resumed_due=reply.resumed_due,
            reasons=tuple(reasons),
            **fields,
        )
    if not agent and routing.claims_agent(email, config):
        reasons.append(
            f"first response: not counted: {email.from_addr} writes as one of ours, but "
            f"its mail is not authenticated ({auth.state}: {auth.why})"
        )
    unapproved = not match.verified or (match.contact is not None and not match.contact.approved)
    if unapproved and config.unknown_senders == "ignore":
        reasons.append("unknown sender and [contacts] unknown = ignore: recorded, no ticket")
        return replaced(
            base, action=Action.FILTERED, reason="unknown-sender", reasons=tuple(reasons), **fields
        )
    plan = config.plan
    for source, candidate in (("contact", match.plan), ("queue", queue.plan if queue else None)):
        if candidate and candidate in policy.plans:
            plan = candidate
            break
        if candidate:
            reasons.append(f"sla: the {source}'s plan {candidate!r} is not a plan of {policy.name}")
    tz = match.timezone or config.timezone
    deadline = sla_mod.due(policy, plan, policy.rank_of(label), now, tz)
    reasons.append(
        f"sla: {deadline.policy}/{deadline.plan} {deadline.label} {deadline.target} on {deadline.calendar} in {tz}"
    )
    reasons.extend(f"sla walk: {step}" for step in deadline.walk)
    held = unapproved and config.unknown_senders == "hold"
    guard = reply_guard(email, config)
    if guard is None and held and not config.hold_notice:
        guard = "sender held for approval ([contacts] unknown = hold)"
    if guard is None and auth.failed:
        guard = "the From domain failed authentication: no acknowledgement to a forged sender"
    if guard is None:
        guard = history_guard(reply_address(email), facts, config, now)
    reasons.append(f"acknowledgement: {'suppressed: ' + guard if guard else 'queued'}")
    return replaced(
        base,
        action=Action.TICKET,
        ticket=ticket_number(config.ticket_prefix, facts.next_ticket),
        linked_ticket=thread.linked.number if thread.linked else None,
        due=deadline.due,
        deadline=deadline,
        timezone=tz,
        status=lifecycle.HELD if held else lifecycle.OPEN,
        auto_reply=guard is None,
        reply_suppressed=guard,
        reasons=tuple(reasons),
        **fields,
    )


def _priority(
    analysis: Analysis,
    match: contacts_mod.Match,
    queue: Queue | None,
    policy: sla_mod.Policy,
    vip_raise: int,
    reasons: list[str],
) -> tuple[str, int]:
    """The policy's label and the project level, with the steps that set them."""
    level = analysis.level
    reasons.extend(f"priority evidence: {e}" for e in analysis.priority_evidence)
    if match.vip and match.verified and vip_raise:
        level = max(1, level - vip_raise)
        reasons.append(
            f"priority: raised {vip_raise} level(s) for a Priority Connect (VIP) contact"
        )
    label = policy.label_for_level(level)
    if queue is not None and queue.priority:
        label = policy.labels[policy.rank_of(queue.priority)]
        reasons.append(f"priority: queue {queue.name} ({queue.address}) sets {label}")
    reasons.append(f"priority: level {level} → {label} ({policy.name})")
    return label, level


def _is_stranger(match: contacts_mod.Match, auth: routing.Verdict) -> bool:
    """Matched to no contact and no known company by address: a display name alone (fuzzy)
    proves nothing, and a From domain that failed authentication proves nothing either."""
    return match.kind in ("none", "fuzzy") or auth.failed


def _ceiling(
    label: str, level: int, policy: sla_mod.Policy, ceiling: str, reasons: list[str]
) -> tuple[str, int]:
    """No more urgent than `ceiling` ([contacts] unknown_ceiling), queues included."""
    top = policy.rank_of(ceiling)
    if policy.rank_of(label) >= top:
        return label, level
    capped = policy.labels[top]
    while level < 4 and policy.rank_of(policy.label_for_level(level)) < top:
        level += 1
    reasons.append(
        f"priority: {label} capped at {capped}: the sender matches no contact and no known "
        "company ([contacts] unknown_ceiling)"
    )
    return capped, level
