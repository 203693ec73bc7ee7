"""Stage two: what happens to one analysed message, decided against the facts of its batch.

Pure in what it imports and in what it does: the past arrives as `Facts`, the
clock as `now`. Given the same analysis, facts, rules and clock it returns the
same `Decision`, and the Decision says why (`triage explain` prints the trace).
"""

from __future__ import annotations

from datetime import datetime

from triage.core import contacts as contacts_mod
from triage.core import evidence as evidence_mod
from triage.core import routing
from triage.core.analysis import Analysis
from triage.core.conversation import find_thread
from triage.core.decision import Action, Decision
from triage.core.facts import Facts
from triage.core.keys import resolve_key
from triage.core.message import Email
from triage.core.rules import Rules
from triage.core.ticketing import ticket_or_append
from triage.core.values import replaced


def decide(analysis: Analysis, facts: Facts, rules: Rules, now: datetime) -> Decision:
    """The whole decision for one message: duplicate, quarantined, filtered, review, or a
    ticket or append with its priority, deadline and acknowledgement verdict.

    A new ticket's number is `facts.next_ticket`'s; the caller writes the decision and
    decides the next message against `facts.after(...)`.
    """
    email = analysis.email
    note: str | None = None
    if email is not None:
        key, again, note = resolve_key(email, facts.stored)
        if again:
            return Decision.duplicate(analysis.source, email)
        if note:
            email = replaced(email, key=key)
            analysis = replaced(analysis, email=email)
    else:
        key = f"sha256:{analysis.raw_sha256}" if analysis.raw_sha256 else None
        if key and key in facts.stored:
            return Decision.unreadable_again(analysis.source, key)
    if analysis.error is not None or email is None:
        return Decision.quarantined(
            analysis.source, email, key, analysis.error, analysis.error_detail
        )
    d = _judge(analysis, email, facts, rules, now)
    if note:
        d = replaced(d, reasons=(*d.reasons, f"key: {note}; kept as {key}"))
    return d


def _judge(analysis: Analysis, email: Email, facts: Facts, rules: Rules, now: datetime) -> Decision:
    """A readable message with a new key: our own mail, weak or strong rules, or a person."""
    base = Decision(analysis.source, Action.TICKET, email.key, email.message_id, email=email)
    ours = rules.filters.sent_by_us
    if (
        ours is not None
        and (analysis.filter_id is None or analysis.evidence)
        and email.message_id
        and facts.sent_by_us(email.message_id)
    ):
        return replaced(
            base,
            action=Action.FILTERED,
            reason=ours.id,
            reasons=(
                f"filter {ours.id}: Message-ID {email.message_id} is in our outbox: our own mail came back",
            ),
        )
    prelude: list[str] = []
    if analysis.filter_id is not None and analysis.evidence:
        verdict, signals = _weigh(analysis, email, rules, facts)
        prelude = [
            f"filter {analysis.filter_id} (weak): {analysis.filter_why}",
            *(f"evidence {s.line()}" for s in signals),
            f"evidence: {verdict.outcome}: {verdict.why}",
        ]
        if verdict.outcome == evidence_mod.REVIEW:
            return replaced(
                base,
                action=Action.REVIEW,
                reason=analysis.filter_id,
                reasons=(*prelude, "review: no ticket and no acknowledgement until released"),
                evidence=signals,
            )
        if verdict.outcome == evidence_mod.TICKET:
            d = ticket_or_append(analysis, email, base, rules, facts, now)
            return replaced(d, reasons=(*prelude, *d.reasons), evidence=signals)
        base = replaced(base, evidence=signals)
    if analysis.filter_id is not None:
        reasons = prelude or [f"filter {analysis.filter_id}: {analysis.filter_why}"]
        base = replaced(base, category=analysis.filter_category or None)
        bounced = analysis.returned
        ours = (
            facts.ticket_for_our_message(bounced.message_ids)
            if bounced and bounced.message_ids
            else None
        )
        if ours is not None and bounced is not None:
            sent_to = facts.recipient_of_our_message(bounced.message_ids)
            named = bounced.recipients or ((bounced.recipient,) if bounced.recipient else ())
            if sent_to is None or (named and sent_to not in named):
                reasons.append(
                    f"a delivery failure naming {', '.join(named)}, but our acknowledgement for "
                    f"{ours.number} with that Message-ID went to {sent_to or '?'}: not counted "
                    "(a bounce counts only for the address the acknowledgement was sent to)"
                )
                return replaced(
                    base,
                    action=Action.FILTERED,
                    reason=analysis.filter_id,
                    linked_ticket=ours.number,
                    reasons=tuple(reasons),
                )
            bounced = replaced(bounced, recipient=sent_to)
            kind = "permanent" if bounced.permanent else "temporary"
            reasons.append(
                f"delivery failure ({kind}, status {bounced.status or '?'}) of our acknowledgement for "
                f"{ours.number} to {bounced.recipient or '?'}: linked to the ticket, never appended, never answered"
            )
            return replaced(
                base,
                action=Action.FILTERED,
                reason=analysis.filter_id,
                linked_ticket=ours.number,
                bounce=bounced,
                reasons=tuple(reasons),
            )
        return replaced(
            base, action=Action.FILTERED, reason=analysis.filter_id, reasons=tuple(reasons)
        )
    return ticket_or_append(analysis, email, base, rules, facts, now)


def _weigh(
    analysis: Analysis, email: Email, rules: Rules, facts: Facts
) -> tuple[evidence_mod.Verdict, tuple[evidence_mod.Signal, ...]]:
    """Weak rules against the signs of a person, and one fact of the past: does it answer
    one of our tickets (from `facts`)."""
    match = analysis.match or contacts_mod.Match.none()
    auth = analysis.auth or routing.authentication(email, rules.config)
    thread = find_thread(
        email,
        facts,
        rules.config.ticket_prefix,
        company=routing.vouched_company(match, auth),
        forged=auth.failed,
        agent=routing.is_agent(email, rules.config, auth),
    )
    signals = analysis.evidence
    # Only a reply that may append counts: a robot answering our acknowledgement names our
    # Message-ID too, and a guessed token names any ticket.
    reply_to = thread.ticket.number if thread.ticket is not None else None
    if reply_to:
        signals = (*signals, evidence_mod.reply_signal(reply_to))
    return evidence_mod.weigh(signals, rules.evidence.needs), signals
