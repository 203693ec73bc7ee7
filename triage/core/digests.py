"""The operator's daily digest of mail held for review, and how one held message reads.

Pure: the held messages, the instant and the Message-ID's random token come from
the caller (engine/review.py reads the rows and draws the token).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from triage.config import Config
from triage.core.replies import capped_subject, clean

DIGEST_MAX = 200  # messages listed in one digest; `triage review` lists them all


@dataclass(frozen=True, slots=True)
class Held:
    """One message waiting for review, as `triage review` lists it."""

    id: int
    key: str
    message_id: str | None
    sender: str
    subject: str
    received_at: str
    reason: str
    source: str
    sha256: str
    evidence: tuple[dict, ...]

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "key": self.key,
            "message_id": self.message_id,
            "from": self.sender,
            "subject": self.subject,
            "received_at": self.received_at,
            "reason": self.reason,
            "source": self.source,
            "evidence": list(self.evidence),
            "release": f"triage review release {self.id}",
        }

    def sides(self, side: str) -> list[str]:
        """The names of the signals on one side, set-aside rules marked."""
        return [
            e["name"] + (" (set aside)" if e.get("answered") else "")
            for e in self.evidence
            if e.get("side") == side
        ]


@dataclass(frozen=True, slots=True)
class Digest:
    to: str
    subject: str
    message_id: str
    text: str
    raw: bytes


def describe(h: Held, mark: str = "") -> list[str]:
    """One held message as the listing and the digest show it (plain text, one fact a line)."""
    return [
        f"{mark:5}#{h.id}  {h.received_at}  {clean(h.sender)}",
        f"       subject: {capped_subject(h.subject, 120)}",
        f"       rule:    {h.reason}",
        f"       person:  {', '.join(h.sides('person')) or 'none'}",
        f"       machine: {', '.join(h.sides('machine')) or 'none'}",
        f"       release: triage review release {h.id}",
        "",
    ]


def render(
    held: list[Held], new: list[Held], config: Config, now: datetime, token: str
) -> Digest | None:
    """The digest of `held` (`new`: those that arrived since the last one), or None when
    nothing waits; `token` makes its Message-ID unique."""
    if not held:
        return None
    subject = f"triage: {len(held)} message(s) wait for review ({len(new)} new)"
    lines = [
        f"{len(held)} message(s) were kept out of the ticket queue because only weak filter rules",
        "fired on mail that shows signs of a person. Nothing was answered. Release one into a",
        "ticket (its deadline runs from its arrival) with the command shown under it.",
        "",
    ]
    for h in held[:DIGEST_MAX]:
        lines += describe(h, "new" if h in new else "")
    if len(held) > DIGEST_MAX:
        lines += [f"... and {len(held) - DIGEST_MAX} more.", ""]
    lines.append("Everything in review: triage review (or triage review --json).")
    text = "\n".join(lines) + "\n"
    domain = sorted(config.own_domains)[0]
    message_id = f"<review-digest.{now:%Y%m%d%H%M%S}.{token}@{domain}>"
    to = config.daemon.operator or ""
    head = (
        f"From: {config.support_address}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: {now.strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\nMessage-ID: {message_id}\r\n"
        "Auto-Submitted: auto-generated\r\nX-Auto-Response-Suppress: All\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    )
    raw = head.encode("ascii") + text.replace("\n", "\r\n").encode("utf-8")
    return Digest(to, subject, message_id, text, raw)
