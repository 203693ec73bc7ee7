"""The pure core composed: bytes -> Analysis -> Decision, with every reason kept.

Two stages so the costly one can run on every core: `analyse` needs only the
bytes and the rules (parse, filter, contact, priority); `decide` needs the
conversation state (threading, SLA) and runs where the store is.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from triage import contacts as contacts_mod
from triage import message, routing
from triage import priority as priority_mod
from triage import sla as sla_mod
from triage.bounces import Returned, returned
from triage.bounds import Limits, MessageError
from triage.config import Config, Queue
from triage.conversation import Threads, TicketRef, find_thread
from triage.filters import FilterSet
from triage.message import Email
from triage.replies import history_guard, reply_address, reply_guard
from triage.templates import Templates
from triage.wire import by_position


class Action(StrEnum):
    TICKET = "ticket"
    APPEND = "append"
    FILTERED = "filtered"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"


@dataclass(frozen=True, slots=True)
class Rules:
    """Everything the pure steps read, loaded once (and again on reload)."""

    config: Config
    filters: FilterSet
    vocabulary: priority_mod.Vocabulary
    policy: sla_mod.Policy
    directory: contacts_mod.Directory
    templates: Templates

    @classmethod
    def load(cls, config: Config, contacts: tuple = ()) -> Rules:
        policies = sla_mod.load_policies(config.sla_dir)
        if config.policy not in policies:
            raise sla_mod.SlaError(
                f"{config.path}: [sla.policy] {config.policy!r} is not a policy; "
                f"fix: use one of {sorted(policies)}"
            )
        policy = policies[config.policy]
        if config.plan is not None and config.plan not in policy.plans:
            known = sorted(p for p in policy.plans if p is not None) or ["(none: remove plan)"]
            raise sla_mod.SlaError(
                f"{config.path}: [sla.plan] {config.plan!r} is not a plan of {policy.name}; "
                f"fix: use one of {known}"
            )
        if config.unknown_ceiling is not None:
            try:
                policy.rank_of(config.unknown_ceiling)
            except sla_mod.SlaError:
                raise sla_mod.SlaError(
                    f"{config.path}: [contacts.unknown_ceiling] {config.unknown_ceiling!r} is not "
                    f"a priority of {policy.name}; fix: use one of "
                    f"{', '.join(policy.labels.values())}, or remove the key to turn the ceiling off"
                ) from None
        for queue in config.queues:
            if queue.plan is not None and queue.plan not in policy.plans:
                raise sla_mod.SlaError(
                    f"{config.path}: [queue {queue.name}] plan {queue.plan!r} is not a plan of "
                    f"{policy.name}; fix: use one of {sorted(p for p in policy.plans if p)}"
                )
            if queue.priority is not None:
                try:
                    policy.rank_of(queue.priority)
                except sla_mod.SlaError as exc:
                    raise sla_mod.SlaError(
                        f"{config.path}: [queue {queue.name}] priority: {exc}"
                    ) from None
        return cls(
            config=config,
            filters=FilterSet.from_toml(config.filters_file, config.own_domains),
            vocabulary=priority_mod.Vocabulary.from_toml(config.priority_file),
            policy=policy,
            directory=contacts_mod.Directory.build(
                contacts, fuzzy_threshold=config.fuzzy_threshold
            ),
            templates=Templates.load(config.rules_dir / "templates"),
        )


@by_position
@dataclass(frozen=True, slots=True)
class Analysis:
    """Stage one: what the message is, independent of what is stored."""

    source: str
    email: Email | None
    error: str | None = None  # quarantine reason code
    error_detail: str = ""
    filter_id: str | None = None
    filter_why: str = ""
    level: int = 3
    priority_evidence: tuple[str, ...] = ()
    match: contacts_mod.Match | None = None
    requester: routing.Requester | None = None
    queue: Queue | None = None
    returned: Returned | None = None  # for filtered mail: what a bounce says it returns
    raw_sha256: str = ""
    raw: bytes | None = field(default=None, repr=False)  # kept only for quarantine


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to one message, and why (`triage explain` prints `reasons`)."""

    source: str
    action: Action
    message_key: str | None
    message_id: str | None
    reason: str | None = None
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
    reasons: tuple[str, ...] = ()
    email: Email | None = field(default=None, repr=False, compare=False)

    def as_json(self) -> dict:
        """The replay contract's fields (ARCHITECTURE.md), plus a few extras."""
        return {
            "source": self.source,
            "message_id": self.message_id,
            "action": str(self.action),
            "reason": self.reason,
            "ticket": self.ticket,
            "priority": self.priority,
            "contact": self.contact,
            "match": self.match,
            "due": self.due.isoformat().replace("+00:00", "Z") if self.due else None,
            "auto_reply": self.auto_reply,
            "linked_ticket": self.linked_ticket,
            "verified": self.verified,
            "requester": self.requester,
            "forwarded_by": self.forwarded_by,
            "queue": self.queue,
            "vip": self.vip,
            "reply_suppressed": self.reply_suppressed,
        }


def analyse(raw: bytes, source: str, rules: Rules) -> Analysis:
    """Stage one; never raises for anything the bytes contain."""
    email: Email | None = None
    try:
        reading = message.read(raw, Limits(max_bytes=rules.config.max_bytes))
        email = reading.head
        hit = rules.filters.first_match(email, reading.complete)
        if hit is not None:
            # Filtered mail is recorded by its headers; its bodies are never needed.
            return Analysis(
                source, email, filter_id=hit.rule.id, filter_why=hit.why, returned=returned(raw)
            )
        email = reading.complete()
        return _analyse_email(email, source, rules)
    except MessageError as exc:
        return Analysis(source, None, exc.reason, exc.detail)
    except Exception as exc:  # noqa: BLE001 - hostile input must never stop a batch
        reason = "parse_error" if email is None else "pipeline_error"
        return Analysis(source, None, reason, f"{type(exc).__name__}: {exc}")


def _analyse_email(email: Email, source: str, rules: Rules) -> Analysis:
    headers = {k: v[0] for k, v in email.headers.items() if v}
    prio = priority_mod.infer(email.subject, email.body, headers, rules.vocabulary)
    requester = routing.requester_of(email, rules.config)
    return Analysis(
        source,
        email,
        level=prio.level,
        priority_evidence=tuple(_evidence(e) for e in prio.evidence),
        match=routing.match_sender(email, requester, rules.directory),
        requester=requester,
        queue=routing.queue_of(email, rules.config),
    )


def _evidence(e: priority_mod.Evidence) -> str:
    state = "negated" if e.negated else f"level {e.level}"
    return f"{e.word!r} in {e.where} ({state})"


def decide(analysis: Analysis, rules: Rules, threads: Threads, now: datetime) -> Decision:
    """Stage two: thread, apply the unknown-sender policy, compute the deadline."""
    email = analysis.email
    if analysis.error is not None or email is None:
        return Decision(
            analysis.source,
            Action.QUARANTINED,
            email.key if email else None,
            email.message_id if email else None,
            reason=analysis.error,
            reasons=(f"quarantined: {analysis.error}: {analysis.error_detail}",),
            email=email,
        )
    base = Decision(analysis.source, Action.TICKET, email.key, email.message_id, email=email)
    if analysis.filter_id is not None:
        reasons = [f"filter {analysis.filter_id}: {analysis.filter_why}"]
        bounced = analysis.returned
        ours = (
            threads.ticket_for_our_message(bounced.message_ids)
            if bounced and bounced.message_ids
            else None
        )
        if ours is not None and bounced is not None:
            kind = "permanent" if bounced.permanent else "temporary"
            reasons.append(
                f"delivery failure ({kind}, status {bounced.status or '?'}) of our acknowledgement for "
                f"{ours.number} to {bounced.recipient or '?'}: linked to the ticket, never appended, never answered"
            )
            return replace(
                base,
                action=Action.FILTERED,
                reason=analysis.filter_id,
                linked_ticket=ours.number,
                bounce=bounced,
                reasons=tuple(reasons),
            )
        return replace(
            base, action=Action.FILTERED, reason=analysis.filter_id, reasons=tuple(reasons)
        )
    return _ticket_or_append(analysis, email, base, rules, threads, now)


def _ticket_or_append(
    analysis: Analysis, email: Email, base: Decision, rules: Rules, threads: Threads, now: datetime
) -> Decision:
    config, policy = rules.config, rules.policy
    match = analysis.match or contacts_mod.Match.none()
    requester = analysis.requester or routing.Requester(
        email.from_addr, email.from_name, None, "From"
    )
    queue = analysis.queue
    reasons = [f"requester: {requester.why}", f"contact: {match.kind} — {match.why}"]
    thread = find_thread(
        email, threads, config.ticket_prefix, contacts_mod.FREE_MAIL_DOMAINS, match.company
    )
    reasons.append(f"conversation: {thread.why}")
    stranger = _is_stranger(match, email)
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
        reasons.append("no acknowledgement for an appended reply")
        return replace(
            base,
            action=Action.APPEND,
            ticket=thread.ticket.number,
            reasons=tuple(reasons),
            **fields,
        )
    unapproved = not match.verified or (match.contact is not None and not match.contact.approved)
    if unapproved and config.unknown_senders == "ignore":
        reasons.append("unknown sender and [contacts] unknown = ignore: recorded, no ticket")
        return replace(
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
    if guard is None and routing.forged(email):
        guard = "the From domain failed authentication: no acknowledgement to a forged sender"
    if guard is None:
        guard = history_guard(reply_address(email), threads, config, now)
    reasons.append(f"acknowledgement: {'suppressed: ' + guard if guard else 'queued'}")
    return replace(
        base,
        action=Action.TICKET,
        linked_ticket=thread.linked.number if thread.linked else None,
        due=deadline.due,
        deadline=deadline,
        timezone=tz,
        status="pending-approval" if held else "open",
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


def _is_stranger(match: contacts_mod.Match, email: Email) -> bool:
    """Matched to no contact and no known company by address: a display name alone (fuzzy)
    proves nothing, and a From domain that failed authentication proves nothing either."""
    return match.kind in ("none", "fuzzy") or routing.forged(email)


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


def duplicate(analysis: Analysis) -> Decision:
    email = analysis.email
    assert email is not None
    return Decision(
        analysis.source,
        Action.DUPLICATE,
        email.key,
        email.message_id,
        reasons=(f"duplicate: message key {email.key} is already stored",),
        email=email,
    )


__all__ = ["Action", "Analysis", "Decision", "Rules", "TicketRef", "analyse", "decide", "duplicate"]
