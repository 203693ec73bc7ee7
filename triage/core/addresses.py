"""Addresses read from header text as it came: an encoded word is only ever a name.

RFC 2047 §5: an encoded word never appears in an addr-spec. Decoding a whole
header before parsing it lets `=?utf-8?q?jane=40acme=2Eexample?= <eve@evil.example>`
spell jane@acme.example, and `=0D=0A` start a new header line. So addresses are
parsed from the raw (unfolded) header, and only a display name is decoded,
afterwards, by the caller.

Pure and bounded: the fast path is one regular expression per item; the
stdlib's strict parser (several microseconds a character) reads at most
MAX_ADDRESS_TEXT per call.
"""

from __future__ import annotations

import re
from email.utils import getaddresses

from triage.core.limits import MessageError

MAX_ADDRESS_TEXT = 32 * 1024

_ATOM_ADDR = r"[^<>\s,;:()\"\\\[\]@]+@[^<>\s,;:()\"\\\[\]@]+"
_PLAIN_ONE = re.compile(rf"\s*(?:([^<>,;:()\"\\\[\]@]*?)\s*<({_ATOM_ADDR})>|({_ATOM_ADDR}))\s*")
# What an acknowledgement may be sent to: one addr-spec, no space, no control character,
# nothing that would end an SMTP command or a header (RFC 5321 §4.5.3.1: 64 + 255 octets).
_SENDABLE = re.compile(
    r"[^\s\x00-\x1f\x7f<>()\[\],;:\"\\@]{1,64}@[^\s\x00-\x1f\x7f<>()\[\],;:\"\\@]{1,253}"
)


def unfold(value: str) -> str:
    """A header value on one line, runs of white space made one space.

    Done before parsing: the fast path's lazy name group then meets no long run of
    spaces (which would make it quadratic), and folding never splits an address.
    """
    return " ".join(value.split())


def parse_addresses(values: list[str]) -> list[tuple[str, str]]:
    """(name, address) pairs, like `email.utils.getaddresses`, with a fast path.

    Give it raw header values: names come back as written (encoded words and all),
    addresses as written. Most address headers are plain `a@b` or `Name <a@b>`
    lists; those are read by one regular expression. Anything else (quotes,
    comments, groups, odd punctuation) goes to the stdlib's strict parser.
    """
    out: list[tuple[str, str]] = []
    budget = MAX_ADDRESS_TEXT
    for value in values:
        items = value.split(",")
        parsed = [_PLAIN_ONE.fullmatch(item) for item in items if item.strip()]
        if all(parsed):
            out.extend(
                (" ".join((m.group(1) or "").split()), m.group(2))
                if m.group(2)
                else ("", m.group(3))
                for m in parsed
                if m
            )
        elif budget > 0:
            try:
                out.extend(getaddresses([value[:budget]]))
            except RecursionError:  # it recurses once per group ("a: b: c: ..."), unbounded
                raise MessageError("bad_header", "an address header nested too deep") from None
            budget -= len(value)
    return out


def addresses(values: list[str]) -> tuple[str, ...]:
    """The distinct lowercase addresses of raw header values, in order; names dropped."""
    out: list[str] = []
    for _name, addr in parse_addresses(values):
        addr = addr.strip().lower()
        if addr and addr not in out:
            out.append(addr)
    return tuple(out)


def first_mailbox(values: list[str]) -> tuple[str, str]:
    """(raw name, lowercase address) of the first mailbox in raw header values.

    A header holding only a name (`From: MAILER-DAEMON`) gives that text as the
    address, as written: it is never decoded, so it never becomes an address by decoding.
    """
    pairs = parse_addresses(values)
    name, addr = pairs[0] if pairs else ("", "")
    if not addr.strip() and name:
        name, addr = "", name
    return name.strip(), addr.strip().lower()


def sendable(address: str) -> bool:
    """True when `address` is one plain addr-spec that can go into RCPT TO and a To header."""
    return bool(_SENDABLE.fullmatch(address))
