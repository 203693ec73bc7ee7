"""The pure core composed: bytes -> Analysis -> Decision, with every reason kept.

Two stages so the costly one can run on every core: `analyse` needs only the
bytes and the rules (parse, filter, contact, priority); `decide` needs the
conversation state (threading, SLA) and runs where the store is.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from triage import instants
from triage.config import Config, Queue, shipped_rules
from triage.core import contacts as contacts_mod
from triage.core import evidence as evidence_mod
from triage.core import message, routing
from triage.core import priority as priority_mod
from triage.core import sla as sla_mod
from triage.core.authresults import Verdict
from triage.core.conversation import Threads, TicketRef, find_thread
from triage.core.filters import FilterSet
from triage.core.limits import Limits, MessageError
from triage.core.message import Email
from triage.core.replies import history_guard, reply_address, reply_guard
from triage.core.returned import Returned, returned
from triage.core.templates import Templates
from triage.core.values import by_position


class Action(StrEnum):
    TICKET = "ticket"
    APPEND = "append"
    FILTERED = "filtered"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"
    # Only weak rules fired, on mail that shows a person: held for a person to look at.
    REVIEW = "review"


@dataclass(frozen=True, slots=True)
class Rules:
    """Everything the pure steps read, loaded once (and again on reload)."""

    config: Config
    filters: FilterSet
    vocabulary: priority_mod.Vocabulary
    policy: sla_mod.Policy
    directory: contacts_mod.Directory
    templates: Templates
    evidence: evidence_mod.Vocabulary

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
            filters=FilterSet.from_toml(
                config.filters_file, config.own_domains, config.ticket_prefix
            ),
            vocabulary=priority_mod.Vocabulary.from_toml(config.priority_file),
            policy=policy,
            directory=contacts_mod.Directory.build(
                contacts, fuzzy_threshold=config.fuzzy_threshold
            ),
            templates=Templates.load(config.rules_dir / "templates"),
            evidence=evidence_mod.Vocabulary.from_toml(evidence_file(config)),
        )


def evidence_file(config: Config) -> Path:
    """The rules folder's evidence.toml; a folder copied before it existed uses the shipped one."""
    own = config.rules_dir / "evidence.toml"
    return own if own.is_file() else shipped_rules() / "evidence.toml"


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
    filter_category: str = ""  # the rule's category ("spam" is listed apart)
    level: int = 3
    priority_evidence: tuple[str, ...] = ()
    match: contacts_mod.Match | None = None
    requester: routing.Requester | None = None
    queue: Queue | None = None
    returned: Returned | None = None  # for filtered mail: what a bounce says it returns
    raw_sha256: str = ""
    raw: bytes | None = field(default=None, repr=False)  # kept for quarantine and review
    auth: Verdict | None = None  # what our boundary's Authentication-Results say of the From
    # Only weak rules fired: the signals they are weighed against in `decide`.
    evidence: tuple[evidence_mod.Signal, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to one message, and why (`triage explain` prints `reasons`)."""

    source: str
    action: Action
    message_key: str | None
    message_id: str | None
    reason: str | None = None
    category: str | None = None  # of the filter rule that fired (e.g. "spam")
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
    evidence: tuple[evidence_mod.Signal, ...] = ()  # weak rules and the signs weighed against them
    email: Email | None = field(default=None, repr=False, compare=False)

    def as_json(self) -> dict:
        """The replay contract's fields (ARCHITECTURE.md), plus a few extras."""
        return {
            "source": self.source,
            "message_id": self.message_id,
            "action": str(self.action),
            "reason": self.reason,
            "category": self.category,
            "ticket": self.ticket,
            "priority": self.priority,
            "contact": self.contact,
            "match": self.match,
            "due": instants.iso(self.due) if self.due else None,
            "auto_reply": self.auto_reply,
            "linked_ticket": self.linked_ticket,
            "verified": self.verified,
            "requester": self.requester,
            "forwarded_by": self.forwarded_by,
            "queue": self.queue,
            "vip": self.vip,
            "reply_suppressed": self.reply_suppressed,
            "evidence": [s.as_json() for s in self.evidence],
        }


def analyse(raw: bytes, source: str, rules: Rules, released: bool = False) -> Analysis:
    """Stage one; never raises for anything the bytes contain.

    `released`: a person let this message through (`triage review release`): no filter runs.
    """
    email: Email | None = None
    try:
        reading = message.read(
            raw, Limits(max_bytes=rules.config.max_bytes), rules.filters.header_names
        )
        email = reading.head
        hits = () if released else rules.filters.hits(email, reading.complete)
        first = hits[0] if hits else None
        if first is not None and not hits[-1].rule.weak:
            # A strong rule: filtered, recorded by its headers; its bodies are never needed.
            # The reason stays the first rule in file order, weak or not.
            return Analysis(
                source,
                email,
                filter_id=first.rule.id,
                filter_why=first.why
                if first is hits[-1]
                else f"{first.why}; decided by the strong rule {hits[-1].rule.id}: {hits[-1].why}",
                filter_category=_category(hits),
                returned=returned(raw),
            )
        email = reading.complete()
        result = _analyse_email(email, source, rules)
        if first is None:
            return result
        # Only weak rules fired: weigh them against the signs of a person (in `decide`,
        # which also knows whether this answers one of our tickets).
        match = result.match
        contact = (
            match.contact.email
            if match and match.contact and match.verified and match.kind in _KNOWN
            else None
        )
        return replace(
            result,
            filter_id=first.rule.id,
            filter_why=first.why,
            filter_category=_category(hits),
            returned=returned(raw),
            evidence=evidence_mod.gather(email, hits, rules.evidence, contact),
        )
    except MessageError as exc:
        return Analysis(source, None, exc.reason, exc.detail)
    except Exception as exc:  # noqa: BLE001 - hostile input must never stop a batch
        reason = "parse_error" if email is None else "pipeline_error"
        return Analysis(source, None, reason, f"{type(exc).__name__}: {exc}")


_KNOWN = ("exact", "plus", "alias")  # matches that name the contact, not only their company


def _category(hits) -> str:
    """The category of the first rule that fired with one ("spam" is listed apart)."""
    return next((h.rule.category for h in hits if h.rule.category), "")


def _analyse_email(email: Email, source: str, rules: Rules) -> Analysis:
    headers = {k: v[0] for k, v in email.headers.items() if v}
    prio = priority_mod.infer(email.subject, email.body, headers, rules.vocabulary)
    requester = routing.requester_of(email, rules.config)
    auth = routing.authentication(email, rules.config)
    return Analysis(
        source,
        email,
        level=prio.level,
        priority_evidence=tuple(_evidence(e) for e in prio.evidence),
        match=routing.match_sender(email, requester, rules.directory, auth),
        requester=requester,
        queue=routing.queue_of(email, rules.config),
        auth=auth,
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
    ours = rules.filters.sent_by_us
    if (
        ours is not None
        and (analysis.filter_id is None or analysis.evidence)
        and email.message_id
        and threads.sent_by_us(email.message_id)
    ):
        return replace(
            base,
            action=Action.FILTERED,
            reason=ours.id,
            reasons=(
                f"filter {ours.id}: Message-ID {email.message_id} is in our outbox: our own mail came back",
            ),
        )
    prelude: list[str] = []
    if analysis.filter_id is not None and analysis.evidence:
        verdict, signals = _weigh(analysis, email, rules, threads)
        prelude = [
            f"filter {analysis.filter_id} (weak): {analysis.filter_why}",
            *(f"evidence {s.line()}" for s in signals),
            f"evidence: {verdict.outcome}: {verdict.why}",
        ]
        if verdict.outcome == evidence_mod.REVIEW:
            return replace(
                base,
                action=Action.REVIEW,
                reason=analysis.filter_id,
                reasons=(*prelude, "review: no ticket and no acknowledgement until released"),
                evidence=signals,
            )
        if verdict.outcome == evidence_mod.TICKET:
            d = _ticket_or_append(analysis, email, base, rules, threads, now)
            return replace(d, reasons=(*prelude, *d.reasons), evidence=signals)
        base = replace(base, evidence=signals)
    if analysis.filter_id is not None:
        reasons = prelude or [f"filter {analysis.filter_id}: {analysis.filter_why}"]
        base = replace(base, category=analysis.filter_category or None)
        bounced = analysis.returned
        ours = (
            threads.ticket_for_our_message(bounced.message_ids)
            if bounced and bounced.message_ids
            else None
        )
        if ours is not None and bounced is not None:
            sent_to = threads.recipient_of_our_message(bounced.message_ids)
            named = bounced.recipients or ((bounced.recipient,) if bounced.recipient else ())
            if sent_to is None or (named and sent_to not in named):
                reasons.append(
                    f"a delivery failure naming {', '.join(named)}, but our acknowledgement for "
                    f"{ours.number} with that Message-ID went to {sent_to or '?'}: not counted "
                    "(a bounce counts only for the address the acknowledgement was sent to)"
                )
                return replace(
                    base,
                    action=Action.FILTERED,
                    reason=analysis.filter_id,
                    linked_ticket=ours.number,
                    reasons=tuple(reasons),
                )
            bounced = replace(bounced, recipient=sent_to)
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


def _weigh(
    analysis: Analysis, email: Email, rules: Rules, threads: Threads
) -> tuple[evidence_mod.Verdict, tuple[evidence_mod.Signal, ...]]:
    """Weak rules against the signs of a person, with the one fact only the store knows."""
    match = analysis.match or contacts_mod.Match.none()
    auth = analysis.auth or routing.authentication(email, rules.config)
    thread = find_thread(
        email,
        threads,
        rules.config.ticket_prefix,
        company=routing.vouched_company(match, auth),
        forged=auth.failed,
    )
    signals = analysis.evidence
    # Only a reply that may append counts: a robot answering our acknowledgement names our
    # Message-ID too, and a guessed token names any ticket.
    reply_to = thread.ticket.number if thread.ticket is not None else None
    if reply_to:
        signals = (*signals, evidence_mod.reply_signal(reply_to))
    return evidence_mod.weigh(signals, rules.evidence.needs), signals


def _ticket_or_append(
    analysis: Analysis, email: Email, base: Decision, rules: Rules, threads: Threads, now: datetime
) -> Decision:
    config, policy = rules.config, rules.policy
    match = analysis.match or contacts_mod.Match.none()
    requester = analysis.requester or routing.Requester(
        email.from_addr, email.from_name, None, "From"
    )
    queue = analysis.queue
    auth = analysis.auth or routing.authentication(email, config)
    reasons = [
        f"requester: {requester.why}",
        f"authentication: {auth.state} — {auth.why}",
        f"contact: {match.kind} — {match.why}",
    ]
    thread = find_thread(
        email,
        threads,
        config.ticket_prefix,
        company=routing.vouched_company(match, auth),
        forged=auth.failed,
    )
    reasons.append(f"conversation: {thread.why}")
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
    if guard is None and auth.failed:
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
