"""Who the requester is, what the sender may claim, and which queue the message belongs to.

Pure: values in, values out. Kept apart from `pipeline` so each rule here
(hand-forwards, agents, queues by recipient, forged senders) reads on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from triage.config import Config, Queue
from triage.core import authresults
from triage.core.authresults import Verdict
from triage.core.contacts import Directory, Match
from triage.core.forwarding import original_author
from triage.core.message import Email
from triage.core.values import by_position


@by_position
@dataclass(frozen=True, slots=True)
class Requester:
    address: str
    name: str
    forwarded_by: str | None  # the agent who forwarded the customer's mail by hand
    why: str


def requester_of(email: Email, config: Config) -> Requester:
    """The author, or for an agent's hand-forward, the customer whose mail it carries."""
    sender = email.from_addr
    is_agent = sender in config.agents or sender.rpartition("@")[2] in config.own_domains
    if is_agent:
        found = original_author(email)
        if found and found[1] != sender:
            name, address = found
            return Requester(
                address, name, sender, f"forwarded by hand by {sender}; requester {address}"
            )
    return Requester(sender, email.from_name, None, "the author in From")


def claims_agent(email: Email, config: Config) -> bool:
    """The From names one of our agents ([identity] agents, or an address in our domains)."""
    sender = email.from_addr
    return sender in config.agents or sender.rpartition("@")[2] in config.own_domains


def is_agent(email: Email, config: Config, auth: Verdict) -> bool:
    """The From is one of our agents and our boundary's Authentication-Results vouch for
    it: anyone can write our domain in a From, and an agent's mail answers a ticket (its
    first response) and may add to any."""
    return claims_agent(email, config) and auth.passed


def queue_of(email: Email, config: Config) -> Queue | None:
    """The first configured queue whose address the mail was sent to."""
    recipients = set(email.to) | set(email.cc) | set(email.delivered_to)
    return next((q for q in config.queues if q.address in recipients), None)


def authentication(email: Email, config: Config) -> Verdict:
    """What our own boundary's Authentication-Results say about the From's domain."""
    return authresults.verdict(
        email.header("authentication-results"),
        email.from_addr.rpartition("@")[2],
        config.authserv_ids,
    )


def match_sender(email: Email, requester: Requester, directory: Directory, auth: Verdict) -> Match:
    """Contact match, with no privilege the From's authentication does not back.

    A From that failed authentication still shows whom it claims to be, with no plan
    and no VIP. An agent's hand-forward names the customer as requester, but the
    customer's privileges count only when the agent's own mail authenticated: anyone
    can write "From: alice@msp.example" and paste a VIP's name into the body.
    """
    match = directory.match(requester.address, requester.name)
    privileged = match.verified or match.kind == "domain"
    if requester.forwarded_by is not None:
        if privileged and not auth.passed:
            match = match.unverified(
                f"forwarded by {requester.forwarded_by}, whose own mail is not authenticated "
                f"({auth.why}): the customer it names gets no privilege"
            )
    elif privileged and auth.failed:
        match = match.unverified(f"the From failed authentication ({auth.why})")
    return match


def vouched_company(match: Match, auth: Verdict) -> str | None:
    """The company the sender is shown to belong to: it may add to that company's tickets.

    A verified contact's company (exact, plus or alias, not downgraded), or the company
    of a domain match whose From authenticated at our boundary (the domain is proven,
    the person unknown). A name never vouches for anything; a failed From for nothing.
    """
    if auth.failed:
        return None
    if match.verified and match.kind in ("exact", "plus", "alias"):
        return match.company
    if match.kind == "domain" and auth.passed:
        return match.company
    return None
