"""Where an account's folders live on its IMAP server: the personal namespace (RFC 2342).

Folder names are configured with "/" ("Triage/Processed"). Servers keep them differently:
Dovecot's default layout at the top level with "." or "/" ("Triage.Processed"), Cyrus (its
Debian default), Courier and many hosting set-ups under "INBOX." ("INBOX.Triage.Processed"),
where a name outside the prefix is refused or lands in a shared namespace. The server says
which with NAMESPACE; this module reads that answer and turns a configured name into the
server's full name. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(rb'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|([^\s()"]+))')
_LIST = re.compile(rb'^\((?P<flags>[^)]*)\) (?:"(?P<delim>\\?.)"|NIL) (?P<name>.+?)\s*$', re.DOTALL)


@dataclass(frozen=True, slots=True)
class Namespace:
    """The personal namespace's prefix and hierarchy delimiter, and the other namespaces' prefixes."""

    prefix: str = ""
    delimiter: str = "/"
    others: tuple[str, ...] = ()  # other users' and shared namespaces: names already full

    @classmethod
    def from_delimiter(cls, delimiter: str) -> Namespace:
        """A server without NAMESPACE: folders at the top, levels joined by `delimiter`."""
        return cls("", delimiter or "/")

    @classmethod
    def from_response(cls, data: bytes) -> Namespace | None:
        """From the text after `* NAMESPACE` (three groups: personal, other users', shared).

        None when the answer cannot be read or names no personal namespace: the caller then
        falls back to what LIST says.
        """
        try:
            groups = _parse(data)
        except ValueError:
            return None
        if len(groups) < 1 or not isinstance(groups[0], list) or not groups[0]:
            return None
        personal = groups[0][0]
        if not isinstance(personal, list) or len(personal) < 2 or not isinstance(personal[0], str):
            return None
        prefix, delimiter = personal[0], personal[1]
        others = [
            ns[0]
            for group in groups
            if isinstance(group, list)
            for ns in group
            if isinstance(ns, list) and ns and isinstance(ns[0], str) and ns is not personal
        ]
        return cls(prefix, delimiter if isinstance(delimiter, str) else "", tuple(others))

    def full_name(self, name: str) -> str:
        """The server's name for a configured folder name.

        "/" becomes the server's delimiter; the personal prefix is added unless the name
        already starts with a namespace's prefix (an explicit full name is kept as written).
        INBOX is INBOX everywhere (RFC 3501: its name is case-insensitive).
        """
        if name.upper() == "INBOX":
            return "INBOX"
        server = name.replace("/", self.delimiter) if self.delimiter else name
        for prefix in (self.prefix, *self.others):
            if prefix and _starts_with(server, prefix):
                return server
        return self.prefix + server

    def levels(self, full: str) -> list[str]:
        """The folders to CREATE, outermost first, for `full`; none at or above the prefix."""
        if not self.delimiter:
            return [full]
        start = len(self.prefix) if self.prefix and _starts_with(full, self.prefix) else 0
        parts = full[start:].split(self.delimiter)
        head = full[:start]
        return [head + self.delimiter.join(parts[: n + 1]) for n in range(len(parts))]


def listed(lines: list) -> list[tuple[str, str, str]]:
    """(flags in lower case, delimiter, name) of each folder in the lines of a LIST answer.

    A name sent as a literal ({n}) is the line that follows; other lines (the tagged
    status) are skipped.
    """
    out = []
    for n, line in enumerate(lines):
        found = _LIST.match(bytes(line)) if isinstance(line, bytes | bytearray) else None
        if not found:
            continue
        name = found.group("name")
        if name.startswith(b'"') and name.endswith(b'"') and len(name) >= 2:
            name = re.sub(rb"\\(.)", rb"\1", name[1:-1])
        elif re.fullmatch(rb"\{\d+\}", name):
            following = lines[n + 1] if n + 1 < len(lines) else None
            if not isinstance(following, bytes | bytearray):
                continue
            name = bytes(following)
        delimiter = (found.group("delim") or b"").removeprefix(b"\\")
        out.append(
            (
                found.group("flags").decode("utf-8", "replace").lower(),
                delimiter.decode("utf-8", "replace"),
                name.decode("utf-8", "replace"),
            )
        )
    return out


def same_folder(a: str, b: str) -> bool:
    """Two server names of one folder: equal, but INBOX (and the levels below it) in any case."""
    if a[:5].upper() == "INBOX" and b[:5].upper() == "INBOX":
        return a[5:] == b[5:]
    return a == b


def _starts_with(name: str, prefix: str) -> bool:
    """Prefix match; the INBOX part matches in any case, as IMAP names INBOX."""
    if prefix[:5].upper() == "INBOX":
        return name[:5].upper() == "INBOX" and name[5 : len(prefix)] == prefix[5:]
    return name.startswith(prefix)


def _parse(data: bytes) -> list:
    """The NAMESPACE answer as nested lists of str (quoted strings) and None (NIL)."""
    stack: list[list] = [[]]
    pos = 0
    data = data.strip()
    while pos < len(data):
        found = _TOKEN.match(data, pos)
        if not found or found.end() == pos:
            raise ValueError(f"unreadable NAMESPACE answer at {pos}")
        pos = found.end()
        opened, closed, quoted, atom = found.groups()
        if opened:
            stack.append([])
        elif closed:
            if len(stack) == 1:
                raise ValueError("unbalanced NAMESPACE answer")
            done = stack.pop()
            stack[-1].append(done)
        elif quoted is not None:
            stack[-1].append(re.sub(rb"\\(.)", rb"\1", quoted).decode("utf-8", "replace"))
        elif atom.upper() == b"NIL":
            stack[-1].append(None)
        else:
            stack[-1].append(atom.decode("utf-8", "replace"))
    if len(stack) != 1:
        raise ValueError("unbalanced NAMESPACE answer")
    return stack[0]
