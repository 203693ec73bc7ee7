"""How acknowledgements present the desk: the sender's display name in `From:`, a
signature and an emergency telephone line ([identity] display_name, [replies] signature,
[replies] emergency_phone), each checked so that it cannot break the message it goes in.

A display name goes in a header: a CR or LF in it would start a header of the reader's
choosing, so it is refused, not cleaned. The signature and the phone line go in the text
(and, HTML-escaped, in the HTML part).
"""

from __future__ import annotations

import re
from pathlib import Path

from triage.errors import ConfigError

DISPLAY_NAME_MAX = 64  # characters; an encoded non-ASCII name still fits one header line
SIGNATURE_MAX = 1000  # characters
SIGNATURE_LINES = 10
PHONE_MAX = 40
PHONE = re.compile(r"\+?[0-9][0-9 ()./-]*[0-9]")


def display_name(path: Path | str, value: object) -> str:
    """[identity] display_name: one line of printable text, at most 64 characters."""
    key, fix = "identity.display_name", 'write display_name = "Example IT Service Desk"'
    if not isinstance(value, str):
        raise ConfigError(path, key, "must be a string", fix)
    name = value.strip()
    if "\r" in name or "\n" in name:
        raise ConfigError(path, key, "holds a line break (CR or LF)", f"{fix}, on one line")
    if not name.isprintable():
        raise ConfigError(path, key, "holds a control character", fix)
    if len(name) > DISPLAY_NAME_MAX:
        raise ConfigError(
            path, key, f"is {len(name)} characters, more than {DISPLAY_NAME_MAX}", fix
        )
    return name


def signature(path: Path | str, value: object) -> str:
    """[replies] signature: up to 10 lines of printable text, 1,000 characters."""
    key = "replies.signature"
    fix = 'write signature = """\\nExample IT Service Desk\\n+44 20 7946 0000\\n"""'
    if not isinstance(value, str):
        raise ConfigError(path, key, "must be a string", fix)
    lines = [line.rstrip() for line in value.replace("\r\n", "\n").strip("\n").split("\n")]
    text = "\n".join(lines).strip("\n")
    if len(text) > SIGNATURE_MAX:
        raise ConfigError(path, key, f"is {len(text)} characters, more than {SIGNATURE_MAX}", fix)
    if len(lines) > SIGNATURE_LINES:
        raise ConfigError(path, key, f"has {len(lines)} lines, more than {SIGNATURE_LINES}", fix)
    for n, line in enumerate(lines, 1):
        if not line.isprintable():
            raise ConfigError(path, key, f"line {n} holds a control character (a CR?)", fix)
    return text


def emergency_phone(path: Path | str, value: object) -> str:
    """[replies] emergency_phone: a telephone number (digits, spaces, + ( ) . / -)."""
    key, fix = "replies.emergency_phone", 'write emergency_phone = "+44 20 7946 0000"'
    if not isinstance(value, str):
        raise ConfigError(path, key, "must be a string", fix)
    phone = value.strip()
    if not phone:
        return ""
    if len(phone) > PHONE_MAX or not PHONE.fullmatch(phone):
        raise ConfigError(
            path,
            key,
            f"{phone[:60]!r} is not a telephone number of at most {PHONE_MAX} characters"
            " (digits, spaces, + ( ) . / -)",
            fix,
        )
    return phone
