"""IMAP helpers for tests and benches, on any private server (Dovecot, Cyrus) that has
`host`, `port`, `tls_port`, `ca_file` and `users`.

Synchronous, stdlib imaplib, one short session per call over the plain port. Folder names are
ASCII; Dovecot's Maildir++ layout separates levels with "." ("Triage.Done") and rejects "/" in
names. Message bytes come back as IMAP serves them (CRLF line ends).
"""

from __future__ import annotations

import contextlib
import imaplib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from tests.support.certs import client_ssl_context

if TYPE_CHECKING:
    from tests.support.dovecot import Dovecot


class Server(Protocol):
    """What these helpers need of a server: where it listens and who may log in."""

    host: str
    port: int | None
    tls_port: int | None
    ca_file: object
    users: dict[str, str]


def connect(
    server: Server, user: str = "support", *, tls: bool = False, timeout: float = 10.0
) -> imaplib.IMAP4:
    """A logged-in imaplib client: plain port, or imaps (verified against ca_file) with tls."""
    if tls:
        if server.tls_port is None or server.ca_file is None:
            raise ValueError("this server was started with tls=False")
        ctx = client_ssl_context(server.ca_file)
        m: imaplib.IMAP4 = imaplib.IMAP4_SSL(
            server.host, server.tls_port, ssl_context=ctx, timeout=timeout
        )
    else:
        assert server.port is not None
        m = imaplib.IMAP4(server.host, server.port, timeout=timeout)
    try:
        m.login(user, server.users[user])
    except BaseException:
        with contextlib.suppress(Exception):
            m.shutdown()
        raise
    return m


@contextlib.contextmanager
def session(server: Server, user: str = "support") -> Iterator[imaplib.IMAP4]:
    """`with session(dc, "support") as m:` a logged-in imaplib client, logged out afterwards."""
    m = connect(server, user)
    try:
        yield m
    finally:
        with contextlib.suppress(Exception):
            m.logout()


def quote(name: str) -> str:
    """A folder name as an IMAP quoted string (ASCII only here)."""
    if not name.isascii():
        raise ValueError(f"folder names must be ASCII here (modified UTF-7 not done): {name!r}")
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ok(typ: str, data: list, what: str) -> None:
    """Raise RuntimeError naming the command unless imaplib answered OK."""
    if typ != "OK":
        raise RuntimeError(f"IMAP {what} failed: {typ} {data!r}")


def create(server: Server, user: str, folder: str) -> None:
    """Create a folder (no error if it exists)."""
    with session(server, user) as m:
        typ, data = m.create(quote(folder))
        if typ != "OK" and b"ALREADYEXISTS" not in b" ".join(data):
            ok(typ, data, f"CREATE {folder}")


def append(
    server: Server,
    user: str,
    folder: str,
    raw: bytes,
    flags: str = "",
    *,
    date_time: object = None,
    create_folder: bool = True,
) -> int:
    """APPEND raw to folder (created when missing) with flags like "\\Seen \\Flagged".
    date_time: anything imaplib.Time2Internaldate takes. Returns the new UID (APPENDUID).
    Note imaplib turns bare LF line ends into CRLF."""
    with session(server, user) as m:
        flag_arg = f"({flags.strip('()')})" if flags else None
        typ, data = m.append(quote(folder), flag_arg, date_time, raw)
        if typ != "OK" and create_folder and b"TRYCREATE" in b" ".join(data):
            ok(*m.create(quote(folder)), f"CREATE {folder}")
            typ, data = m.append(quote(folder), flag_arg, date_time, raw)
        ok(typ, data, f"APPEND to {folder}")
        found = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
        if not found:
            raise RuntimeError(f"no APPENDUID in {data!r}")
        return int(found.group(1))


def _status(m: imaplib.IMAP4, folder: str, item: str) -> int | None:
    typ, data = m.status(quote(folder), f"({item})")
    if typ != "OK":
        return None
    found = re.search(rb"\b" + item.encode() + rb" (\d+)", data[0] or b"")
    if not found:
        raise RuntimeError(f"no {item} in {data!r}")
    return int(found.group(1))


def count(server: Server, user: str, folder: str) -> int:
    """Messages in folder; 0 when the folder doesn't exist."""
    with session(server, user) as m:
        return _status(m, folder, "MESSAGES") or 0


def uidvalidity(server: Server, user: str, folder: str) -> int:
    with session(server, user) as m:
        value = _status(m, folder, "UIDVALIDITY")
    if value is None:
        raise LookupError(f"no folder {folder!r} for {user}")
    return value


def _fetch(m: imaplib.IMAP4, items: str) -> list[tuple[bytes, bytes | None]]:
    """UID FETCH 1:* items on the selected folder: [(response head, literal or None)]."""
    typ, data = m.uid("FETCH", "1:*", items)
    ok(typ, data, f"UID FETCH {items}")
    out: list[tuple[bytes, bytes | None]] = []
    for part in data:
        if isinstance(part, tuple):
            out.append((part[0], part[1]))
        elif part and part != b")" and re.match(rb"\d+ \(", part):
            out.append((part, None))
    return out


def _uid_of(head: bytes) -> int:
    found = re.search(rb"\bUID (\d+)", head)
    if not found:
        raise RuntimeError(f"no UID in {head!r}")
    return int(found.group(1))


def uids(server: Server, user: str, folder: str) -> list[int]:
    """UIDs in folder, ascending; [] when the folder doesn't exist."""
    with session(server, user) as m:
        typ, _ = m.select(quote(folder), readonly=True)
        if typ != "OK":
            return []
        typ, data = m.uid("SEARCH", "ALL")
        ok(typ, data, "UID SEARCH")
        return sorted(int(x) for x in (data[0] or b"").split())


def fetch_all(server: Server, user: str, folder: str) -> list[bytes]:
    """Every message's bytes (BODY.PEEK[], so \\Seen is left alone), in UID order."""
    with session(server, user) as m:
        typ, _ = m.select(quote(folder), readonly=True)
        if typ != "OK":
            return []
        got = [(_uid_of(h), body) for h, body in _fetch(m, "(UID BODY.PEEK[])") if body is not None]
        return [body for _, body in sorted(got)]


def flags(server: Server, user: str, folder: str) -> dict[int, set[str]]:
    """{uid: {flag, ...}} for every message in folder."""
    with session(server, user) as m:
        typ, _ = m.select(quote(folder), readonly=True)
        if typ != "OK":
            return {}
        out: dict[int, set[str]] = {}
        for head, _body in _fetch(m, "(UID FLAGS)"):
            found = re.search(rb"FLAGS \(([^)]*)\)", head)
            out[_uid_of(head)] = set(found.group(1).decode().split()) if found else set()
        return out


_LIST = re.compile(rb'\((?P<attrs>[^)]*)\) (?P<delim>"(?:[^"\\]|\\.)*"|NIL) (?P<name>.*)$')


def folders(server: Server, user: str) -> list[str]:
    """Every folder name (as the server spells it), sorted."""
    with session(server, user) as m:
        typ, data = m.list('""', "*")
        ok(typ, data, "LIST")
    names = []
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):  # name sent as a literal
            names.append(item[1].decode())
            continue
        found = _LIST.match(item)
        if not found:
            raise RuntimeError(f"unexpected LIST line {item!r}")
        name = found.group("name")
        if name.startswith(b'"'):
            name = re.sub(rb"\\(.)", rb"\1", name[1:-1])
        names.append(name.decode())
    return sorted(names)


def reset_uidvalidity(
    server: Dovecot, user: str, folder: str, *, renumber: bool = False
) -> tuple[int, int]:
    """Make the server change folder's UIDVALIDITY; returns (old, new).

    Works online, on any folder including INBOX (which IMAP can't DELETE): it runs
    `doveadm mailbox update --uid-validity old+1` against this instance. The messages stay; an
    IMAP session that has the folder selected is then disconnected by Dovecot ("* BYE IMAP session
    state is inconsistent, please relogin."), as a real server does when a mailbox is rebuilt.
    By default UIDs are kept. renumber=True first expunges and re-appends every message (same
    bytes, flags and internal date), so each also gets a new, higher UID."""
    old = uidvalidity(server, user, folder)
    if renumber:
        with session(server, user) as m:
            ok(*m.select(quote(folder)), f"SELECT {folder}")
            saved = []
            for head, body in _fetch(m, "(UID FLAGS INTERNALDATE BODY.PEEK[])"):
                if body is None:
                    continue
                fl = re.search(rb"FLAGS \(([^)]*)\)", head)
                date = re.search(rb'INTERNALDATE ("[^"]*")', head)
                kept = [f for f in (fl.group(1).decode().split() if fl else []) if f != "\\Recent"]
                saved.append((_uid_of(head), kept, date.group(1).decode() if date else None, body))
            if saved:
                ok(*m.uid("STORE", "1:*", "+FLAGS.SILENT", "(\\Deleted)"), "STORE \\Deleted")
                ok(*m.expunge(), "EXPUNGE")
            for _uid, kept, date, body in sorted(saved, key=lambda s: s[0]):
                flag_arg = f"({' '.join(kept)})" if kept else None
                ok(*m.append(quote(folder), flag_arg, date, body), f"APPEND to {folder}")
    new = old + 1 if old + 1 < 2**32 else 1
    server.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(new), folder)
    now = uidvalidity(server, user, folder)
    if now != new:
        raise RuntimeError(f"UIDVALIDITY of {folder} is {now} after setting {new}")
    return old, new
