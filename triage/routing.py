"""Who the requester is and which queue the message belongs to.

Pure: values in, values out. Kept apart from `pipeline` so each rule here
(hand-forwards, agents, queues by recipient, forged senders) reads on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from triage.config import Config, Queue
from triage.contacts import Directory, Match
from triage.forwarding import original_author
from triage.message import Email
from triage.wire import by_position


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


def queue_of(email: Email, config: Config) -> Queue | None:
    """The first configured queue whose address the mail was sent to."""
    recipients = set(email.to) | set(email.cc) | set(email.delivered_to)
    return next((q for q in config.queues if q.address in recipients), None)


def match_sender(email: Email, requester: Requester, directory: Directory) -> Match:
    """Contact match, downgraded when the receiving server says the From domain was forged."""
    match = directory.match(requester.address, requester.name)
    if match.verified and requester.forwarded_by is None and forged(email):
        match = match.downgraded(
            "Authentication-Results: DMARC failed (or SPF and DKIM both failed)"
        )
    return match


def forged(email: Email) -> bool:
    """The receiving server says the From domain failed authentication."""
    for result in email.header("authentication-results"):
        text = result.lower()
        if "dmarc=fail" in text or ("spf=fail" in text and "dkim=fail" in text):
            return True
    return False
