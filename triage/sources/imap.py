"""One IMAP mailbox over aioimaplib: TLS, UID bookkeeping, IDLE with a polling fallback.

Nothing here decides anything about a message. The daemon asks for what is
unprocessed, fetches it with BODY.PEEK[] (so nothing is marked read before it
is stored), and acknowledges each message (move, flag or delete) only after the
commit that holds it. Every command has its own timeout: aioimaplib's can miss.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import ssl
from dataclasses import dataclass

import aioimaplib

from triage.config.endpoints import Mailbox, SecretError
from triage.errors import RecordedError
from triage.sources.namespace import Namespace, listed, same_folder

OUTCOMES = ("processed", "filtered", "review", "errors", "filed")  # filed: already in its folder
_FETCH_HEAD = re.compile(rb"^\d+ FETCH \((.*)$", re.DOTALL)
_UID = re.compile(rb"UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_LITERAL = re.compile(rb"\{(\d+)\}\s*$")
_SELECT_CODE = re.compile(rb"\[(UIDVALIDITY|UIDNEXT) (\d+)\]")
_EXISTS = re.compile(rb"^(\d+) EXISTS")
_UNTAGGED = re.compile(rb"^\* (\d+) (EXISTS|EXPUNGE)\b", re.IGNORECASE)


class ImapError(RecordedError):
    """A failure talking to the server; `kind` says what the operator should look at."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # auth | tls | connect | protocol | secret | config


@dataclass(frozen=True, slots=True)
class Selected:
    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclass(frozen=True, slots=True)
class Fetched:
    uid: int
    size: int
    raw: bytes | None  # None when over the size limit: never downloaded


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Certificates verified, host names checked: the system store or the CA file named."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapSession:
    """A logged-in connection with one folder selected."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.client: aioimaplib.IMAP4 | None = None
        self.lost = asyncio.Event()
        self.broken = False  # a command went unanswered: the connection's state is unknown
        self.namespace = Namespace()
        self.capabilities: set[str] = set()
        self.exists = 0  # messages in the selected folder, as the server last said
        self.selected_uidvalidity: int | None = None
        self.arrived = False  # the server announced new mail since the last search began

    # -- connection ---------------------------------------------------------
    async def open(self) -> Selected:
        """Connect, log in, make sure the folders we move to exist, select the watched folder."""
        mb = self.mailbox
        context = tls_context(mb.ca_file) if mb.tls != "none" else None
        self.client = aioimaplib.IMAP4(
            host=mb.host,
            port=mb.port,
            timeout=mb.timeout,
            conn_lost_cb=lambda _exc: self.lost.set(),
            ssl_context=context if mb.tls == "tls" else None,
        )
        self._watch_untagged(self.client.protocol)
        try:
            await self.client.wait_hello_from_server()
        except ssl.SSLCertVerificationError as exc:
            raise ImapError(
                "tls", f"{mb.host}:{mb.port}: certificate not trusted ({exc.verify_message})"
            ) from None
        except ssl.SSLError as exc:
            raise ImapError(
                "tls", f"{mb.host}:{mb.port}: TLS failed ({exc.reason or exc})"
            ) from None
        except (TimeoutError, OSError) as exc:
            raise ImapError(
                "connect", f"{mb.host}:{mb.port}: {exc.__class__.__name__}: {exc}"
            ) from None
        if mb.tls == "starttls":
            await self._starttls(context)
        await self._login()
        self.capabilities = set(self.client.protocol.capabilities)
        self.namespace = await self._namespace()
        if mb.after == "move":
            for key in ("processed_folder", "filtered_folder", "review_folder", "errors_folder"):
                await self._ensure_folder(key, getattr(mb, key))
        return await self._select()

    def _watch_untagged(self, protocol) -> None:
        """See every untagged EXISTS and EXPUNGE, whichever command's answer brings it.

        aioimaplib hands an EXISTS only to a running IDLE; one that comes with the answer to
        SEARCH or FETCH is dropped and one with MOVE's answer is buried in it. Mail that
        arrives while a batch is handled is announced that way, and IDLE never hears of it
        again: without this it waited for the next arrival, or for the IDLE renewal.
        """
        untagged = getattr(protocol, "_untagged_response", None)
        if untagged is None:  # another aioimaplib: wait() then falls back to IDLE alone
            return

        def noticing(line: bytes, untagged=untagged):
            found = _UNTAGGED.match(line)
            if found:
                if found.group(2).upper() == b"EXISTS":
                    count = int(found.group(1))
                    self.arrived = self.arrived or count > self.exists
                    self.exists = count
                else:
                    self.exists = max(0, self.exists - 1)
            return untagged(line)

        protocol._untagged_response = noticing

    async def _starttls(self, context: ssl.SSLContext | None) -> None:
        assert self.client is not None and context is not None
        protocol = self.client.protocol
        if "STARTTLS" not in protocol.capabilities:
            raise ImapError("tls", f"{self.mailbox.host}: the server does not offer STARTTLS")
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        response = await self._timed(protocol.execute(command))
        if response.result != "OK":
            raise ImapError("tls", f"{self.mailbox.host}: STARTTLS refused: {_text(response)}")
        loop = asyncio.get_running_loop()
        try:
            transport = await asyncio.wait_for(
                loop.start_tls(
                    protocol.transport, protocol, context, server_hostname=self.mailbox.host
                ),
                self.mailbox.timeout,
            )
        except ssl.SSLCertVerificationError as exc:
            raise ImapError(
                "tls", f"{self.mailbox.host}: certificate not trusted ({exc.verify_message})"
            ) from None
        except (TimeoutError, ssl.SSLError, OSError) as exc:
            raise ImapError(
                "tls", f"{self.mailbox.host}: STARTTLS handshake failed ({exc})"
            ) from None
        protocol.transport = transport
        await self._timed(protocol.capability())

    async def _login(self) -> None:
        assert self.client is not None
        mb = self.mailbox
        try:
            secret = await asyncio.to_thread(mb.secret.reveal)
        except SecretError as exc:
            raise ImapError(
                "secret", f"{mb.name}: cannot read the {'token' if mb.oauth else 'password'}: {exc}"
            ) from None
        oauth_status = ""
        try:
            if mb.oauth:
                response, oauth_status = await self._xoauth2(mb.username, secret)
            else:
                response = await self.client.login(mb.username, secret)
        except TimeoutError:
            raise ImapError(
                "connect", f"{mb.host}: no answer to LOGIN within {mb.timeout:g} s"
            ) from None
        except aioimaplib.Abort as exc:
            raise ImapError("auth", f"{mb.host}: login refused: {exc}") from None
        if response.result != "OK":
            what = "token" if mb.oauth else "password"
            said = _text(response) + (f"; token status {oauth_status}" if oauth_status else "")
            raise ImapError(
                "auth",
                f"{mb.name}: login as {mb.username} refused ({said}); the {what} may have "
                f"expired or been changed ({mb.secret})",
            )
        # The capabilities after login: xoauth2() never takes the list a server sends with its
        # OK, and login() only when the server sends one (Dovecot does; Gmail does not). With
        # the pre-login list alone (no MOVE, no UIDPLUS) ack() fell back to COPY, STORE
        # \Deleted and a plain EXPUNGE.
        await self._timed(self.client.protocol.capability())

    async def _xoauth2(self, username: str, token: str) -> tuple[aioimaplib.Response, str]:
        """AUTHENTICATE XOAUTH2, answering the challenge a server sends when it refuses the token.

        A refused token is not answered NO at once: the server first sends a continuation holding
        a base64 JSON error ({"status": "401", ...}) and waits for the client's empty response
        (Google's and Microsoft's XOAUTH2; RFC 7628 for OAUTHBEARER). aioimaplib's xoauth2() never
        sends it, so the login hung until the timeout and was reported as a connection problem.
        Returns the response and the error's status ("" when there was none)."""
        assert self.client is not None
        protocol = self.client.protocol
        original = getattr(protocol, "_continuation", None)
        errors: list[bytes] = []
        if original is not None:

            def answer(line: bytes) -> None:
                pending = protocol.pending_sync_command
                if pending is None or pending.name != "AUTHENTICATE":
                    return original(line)
                errors.append(line[1:].strip())
                protocol.transport.write(b"\r\n")  # the empty response: the server ends with NO
                return None

            protocol._continuation = answer
        try:
            response = await self.client.xoauth2(username, token)
        finally:
            if original is not None:
                del protocol._continuation  # the class's own method again
        return response, _oauth_status(errors)

    async def _namespace(self) -> Namespace:
        """The personal namespace (RFC 2342), or LIST's delimiter on a server without NAMESPACE.

        Cyrus, Courier and many hosting set-ups keep a user's folders under "INBOX.": there a
        CREATE "Triage.Processed" was refused, and every move after it failed.
        """
        assert self.client is not None
        if "NAMESPACE" in self.capabilities:
            response = await self._timed(self.client.namespace())
            if response.result == "OK":
                for line in response.lines[:-1]:
                    found = Namespace.from_response(bytes(line))
                    if found is not None:
                        return found
        response = await self._timed(self.client.list('""', '""'))
        for _flags, delimiter, _name in listed(response.lines):
            return Namespace.from_delimiter(delimiter)
        return Namespace.from_delimiter("/")

    def folder(self, name: str) -> str:
        """A configured folder name (written with /) as the server names it."""
        return self.namespace.full_name(name)

    async def _ensure_folder(self, key: str, name: str) -> None:
        """Create `name` (and the levels above it) unless LIST shows it; fail if it is still missing.

        A CREATE the server refuses is a configuration problem, said at once with the fix:
        ignored, it came back as a failed move on every batch, for ever.
        """
        assert self.client is not None
        full = self.folder(name)
        if await self._exists(full):
            return
        said = ""
        for level in self.namespace.levels(full):
            response = await self._timed(self.client.create(quote(level)))
            if response.result != "OK":
                said = _text(response)
        if await self._exists(full):
            return
        ns = self.namespace
        where = f"under {ns.prefix!r}" if ns.prefix else "at the top level"
        raise ImapError(
            "config",
            f"{self.mailbox.name}: folder {full!r} ({key} = {name!r}) does not exist and the "
            f"server did not create it ({said or 'no reason given'}); this account's folders "
            f"are {where}, levels joined by {ns.delimiter!r}; fix: create {full!r} on the "
            f"server, or set {key} to a folder that exists (a name written with / is placed "
            "under the server's prefix)",
        )

    async def _exists(self, full: str) -> bool:
        """LIST says `full` is there and can hold mail."""
        assert self.client is not None
        response = await self._timed(self.client.list('""', quote(full)))
        return response.result == "OK" and any(
            same_folder(name, full) and "\\noselect" not in flags and "\\nonexistent" not in flags
            for flags, _delimiter, name in listed(response.lines)
        )

    async def _select(self) -> Selected:
        assert self.client is not None
        folder = self.folder(self.mailbox.folder)
        response = await self._timed(self.client.select(quote(folder)))
        if response.result != "OK":
            raise ImapError(
                "protocol",
                f"{self.mailbox.name}: cannot select {folder}: {_text(response)}",
            )
        uidvalidity = uidnext = None
        exists = 0
        for line in response.lines:
            data = bytes(line)
            for code, value in _SELECT_CODE.findall(data):
                if code == b"UIDVALIDITY":
                    uidvalidity = int(value)
                else:
                    uidnext = int(value)
            found = _EXISTS.match(data)
            if found:
                exists = int(found.group(1))
        if uidvalidity is None:
            raise ImapError("protocol", f"{self.mailbox.name}: SELECT gave no UIDVALIDITY")
        self.selected_uidvalidity = uidvalidity
        return Selected(uidvalidity, uidnext, exists)

    async def close(self) -> None:
        """LOGOUT, best effort and bounded; none on a connection the server has closed."""
        if self.client is None:
            return
        try:
            if self.lost.is_set() or self.broken:
                return  # nobody would answer: LOGOUT waited its whole time limit
            if self.client.has_pending_idle():
                self.client.idle_done()
            await asyncio.wait_for(self.client.logout(), min(5.0, self.mailbox.timeout))
        except Exception:  # noqa: BLE001 - closing a connection that may already be gone
            pass
        finally:
            transport = getattr(self.client.protocol, "transport", None)
            if transport is not None:
                transport.close()
            self.client = None

    # -- reading ----------------------------------------------------------------
    async def unprocessed(self, after_uid: int = 0) -> list[int]:
        """UIDs still to process, ascending: all of them (move/delete) or those without our keyword."""
        assert self.client is not None
        criteria = ["UNKEYWORD", self.mailbox.keyword] if self.mailbox.after == "flag" else ["ALL"]
        if after_uid:
            criteria = ["UID", f"{after_uid + 1}:*", *criteria]
        self.arrived = False  # what is announced from now on may be missing from this answer
        response = await self._timed(self.client.uid_search(*criteria, charset=None))
        if response.result != "OK":
            raise ImapError("protocol", f"UID SEARCH failed: {_text(response)}")
        uids: set[int] = set()
        for line in response.lines[:-1]:
            uids.update(int(n) for n in re.findall(rb"\d+", bytes(line)))
        # "n:*" always names the highest UID, even when it is below n.
        return sorted(u for u in uids if u > after_uid)

    async def fetch(
        self, uids: list[int], max_bytes: int, budget: int | None = None
    ) -> tuple[list[Fetched], list[int]]:
        """(fetched, left over): sizes first, then BODY.PEEK[] of those within `max_bytes`.

        Peek: nothing is marked read. With a `budget`, the bodies fetched add up to
        at most that many bytes (at least one message is fetched): the UIDs beyond
        it are returned untouched, for the next batch, so a run of large messages
        cannot hold gigabytes in memory at once.
        """
        sizes = {uid: size for uid, size, _ in await self._fetch(uids, "(UID RFC822.SIZE)")}
        taken, wanted, left, total = [], [], [], 0
        for uid in uids:
            size = sizes.get(uid, 0)
            downloaded = uid in sizes and size <= max_bytes
            if left or (budget is not None and taken and downloaded and total + size > budget):
                left.append(uid)
                continue
            taken.append(uid)
            if downloaded:
                wanted.append(uid)
                total += size
        bodies = (
            {uid: raw for uid, _, raw in await self._fetch(wanted, "(UID BODY.PEEK[])")}
            if wanted
            else {}
        )
        return [Fetched(u, sizes[u], bodies.get(u)) for u in taken if u in sizes], left

    async def _fetch(self, uids: list[int], parts: str) -> list[tuple[int, int, bytes | None]]:
        assert self.client is not None
        response = await self._timed(self.client.uid("fetch", ",".join(map(str, uids)), parts))
        if response.result != "OK":
            raise ImapError("protocol", f"UID FETCH failed: {_text(response)}")
        out: list[tuple[int, int, bytes | None]] = []
        lines = response.lines
        i = 0
        while i < len(lines):
            head = bytes(lines[i]) if isinstance(lines[i], bytes | bytearray) else b""
            i += 1
            found = _FETCH_HEAD.match(head)
            if not found:
                continue
            uid = _UID.search(head)
            size = _SIZE.search(head)
            literal = _LITERAL.search(head)
            raw = None
            if literal and i < len(lines):
                raw = bytes(lines[i])
                i += 1
                # the UID may follow the literal: "... BODY[] {n}" <data> " UID 7)"
                if uid is None and i < len(lines):
                    uid = _UID.search(bytes(lines[i]))
            if uid:
                out.append(
                    (int(uid.group(1)), int(size.group(1)) if size else len(raw or b""), raw)
                )
        return out

    # -- acknowledging ------------------------------------------------------------
    async def already_filed(self, outcome: str, message_ids: list[str]) -> set[str]:
        """Which of `message_ids` the folder for `outcome` holds already (move mode).

        Mail can be back in the watched folder after it was filed: a server that
        crashed after answering MOVE may bring it back, and a client stopped
        between COPY and EXPUNGE leaves it there. Filing it again would make a
        second copy. Looks read-only in the target folder, then selects the
        watched folder again; when unsure, says "not filed" (a copy too many,
        never a message too few).
        """
        assert self.client is not None
        wanted = [m for m in message_ids if m.isascii() and m.isprintable()][:500]
        if self.mailbox.after != "move" or not wanted:
            return set()
        found: set[str] = set()
        watched = self.selected_uidvalidity
        response = await self._timed(self.client.examine(quote(self.folder(self._target(outcome)))))
        try:
            if response.result == "OK":
                for mid in wanted:
                    hit = await self._timed(
                        self.client.uid_search("HEADER", "Message-ID", quote(mid), charset=None)
                    )
                    if hit.result == "OK" and any(
                        re.search(rb"\d", bytes(line)) for line in hit.lines[:-1]
                    ):
                        found.add(mid)
        finally:
            selected = await self._select()
            if watched not in (None, selected.uidvalidity):
                raise ImapError("protocol", f"{self.mailbox.folder}: UIDVALIDITY changed")
        return found

    def _target(self, outcome: str) -> str:
        mb = self.mailbox
        return {
            "processed": mb.processed_folder,
            "filtered": mb.filtered_folder,
            "review": mb.review_folder,
            "errors": mb.errors_folder,
        }[outcome]

    async def ack(self, uids: list[int], outcome: str) -> None:
        """Move, flag or delete `uids` after their commit; `outcome` picks the folder.

        "filed": the mail is in its folder already (see `already_filed`); the
        copy left in the watched folder is removed.
        """
        assert self.client is not None and outcome in OUTCOMES
        if not uids:
            return
        mb = self.mailbox
        uid_set = ",".join(map(str, uids))
        if mb.after == "flag":
            await self._ok(
                self.client.uid("store", uid_set, "+FLAGS", f"(\\Seen {mb.keyword})"), "UID STORE"
            )
            return
        if mb.after == "move" and outcome != "filed":
            target = quote(self.folder(self._target(outcome)))
            if "MOVE" in self.capabilities:
                await self._ok(self.client.uid("move", uid_set, target), "UID MOVE")
                return
            await self._ok(self.client.uid("copy", uid_set, target), "UID COPY")
        await self._ok(
            self.client.uid("store", uid_set, "+FLAGS.SILENT", "(\\Deleted)"), "UID STORE"
        )
        if "UIDPLUS" in self.capabilities:
            await self._ok(self.client.uid("expunge", uid_set), "UID EXPUNGE")
        else:
            await self._ok(self.client.expunge(), "EXPUNGE")

    # -- waiting -------------------------------------------------------------------
    async def wait(self, stop: asyncio.Event) -> bool:
        """Until new mail may be there: IDLE (renewed), or a poll interval. False when stopping."""
        assert self.client is not None
        if stop.is_set():
            return False
        if self.arrived:  # announced while we were busy: IDLE would not announce it again
            return True
        if "IDLE" not in self.capabilities or not self.mailbox.use_idle:
            await _first(stop.wait(), self.lost.wait(), timeout=self.mailbox.poll_seconds)
            self._check_lost()
            return not stop.is_set()
        idle = await self._timed(self.client.idle_start(timeout=self.mailbox.idle_seconds))
        try:
            await _first(
                self.client.wait_server_push(timeout=self.mailbox.idle_seconds + 5),
                stop.wait(),
                self.lost.wait(),
                timeout=self.mailbox.idle_seconds + 10,
            )
        finally:
            if not self.lost.is_set():
                self.client.idle_done()
                try:
                    await asyncio.wait_for(idle, self.mailbox.timeout)
                except (TimeoutError, aioimaplib.Abort) as exc:
                    raise ImapError("connect", f"IDLE did not end: {exc}") from None
        self._check_lost()
        return not stop.is_set()

    async def noop(self) -> None:
        assert self.client is not None
        await self._ok(self.client.noop(), "NOOP")

    # -- helpers -------------------------------------------------------------------
    def _check_lost(self) -> None:
        if self.lost.is_set():
            raise ImapError("connect", f"{self.mailbox.host}: connection lost")

    async def _timed(self, awaitable):
        try:
            return await asyncio.wait_for(awaitable, self.mailbox.timeout)
        except TimeoutError:
            self.broken = True
            raise ImapError(
                "connect", f"{self.mailbox.host}: no answer within {self.mailbox.timeout:g} s"
            ) from None
        except aioimaplib.Abort as exc:
            self.broken = True
            raise ImapError("protocol", f"{self.mailbox.host}: {exc}") from None

    async def _ok(self, awaitable, what: str) -> None:
        response = await self._timed(awaitable)
        if response.result != "OK":
            raise ImapError("protocol", f"{what} failed: {_text(response)}")


async def _first(*awaitables, timeout: float) -> None:
    """Wait until the first of `awaitables` finishes (or `timeout`), cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        for task in tasks:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: a timeout in a cancelled waiter is not an error


def _oauth_status(challenges: list[bytes]) -> str:
    """The "status" of the JSON error a server sent as an XOAUTH2 challenge, sanitised ("" if none)."""
    for challenge in challenges:
        try:
            error = json.loads(base64.b64decode(challenge, validate=True))
        except (binascii.Error, ValueError):
            continue
        if isinstance(error, dict) and error.get("status") is not None:
            return re.sub(r"[^A-Za-z0-9_.:-]", "", str(error["status"]))[:40]
    return ""


def _text(response) -> str:
    lines = [
        bytes(x).decode("utf-8", "replace")
        for x in response.lines
        if isinstance(x, bytes | bytearray)
    ]
    return " ".join(lines)[-200:] or response.result
