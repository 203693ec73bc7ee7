"""Stage one: what a message is, from its bytes and the rules alone.

The costly stage (parse, filter, contact, priority) needs nothing stored, so it
runs in the parsing workers, on every core; what it finds travels back to the
process that owns the database as an `Analysis` (pickled by position).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from triage.config import Queue
from triage.core import contacts as contacts_mod
from triage.core import evidence as evidence_mod
from triage.core import message, routing
from triage.core import priority as priority_mod
from triage.core.authresults import Verdict
from triage.core.limits import Limits, MessageError
from triage.core.message import Email
from triage.core.returned import Returned, returned
from triage.core.rules import Rules
from triage.core.values import by_position, replaced


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
    raw: bytes | None = field(default=None, repr=False)  # kept: quarantine, review, tickets
    auth: Verdict | None = None  # what our boundary's Authentication-Results say of the From
    # Only weak rules fired: the signals they are weighed against in `decide`.
    evidence: tuple[evidence_mod.Signal, ...] = ()


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
        return replaced(
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
