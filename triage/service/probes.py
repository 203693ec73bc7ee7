"""`triage check --connect`: log in to each mailbox and relay and say what was found.

Read-only on the mail server: the watched folder is selected and the target
folders listed, nothing is created, moved or flagged (the daemon creates
missing folders at its first start). On the relay: EHLO, STARTTLS or TLS as
configured, and the login; no mail is sent.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, replace

import aiosmtplib

from triage.config.endpoints import Mailbox, SecretError, Smtp
from triage.service.connections import Gates
from triage.sources.imap import ImapError, ImapSession, quote, tls_context

# what the daemon uses when the server has it, or does without at a cost
WANTED_CAPABILITIES = ("IDLE", "MOVE", "UIDPLUS", "NAMESPACE")
WANTED_EXTENSIONS = ("STARTTLS", "SMTPUTF8", "8BITMIME", "SIZE", "PIPELINING")


@dataclass(frozen=True, slots=True)
class Probe:
    what: str  # "mailbox support" | "smtp"
    ok: bool
    found: tuple[str, ...]  # what was found, one fact a line; the reason first when not ok

    def lines(self) -> list[str]:
        head = f"{self.what}: {'ok' if self.ok else 'FAILED'}"
        return [head, *(f"  {fact}" for fact in self.found)]


async def mailbox(mb: Mailbox) -> Probe:
    """Log in, select the watched folder, list the target folders; never create one."""
    what = f"mailbox {mb.name}"
    where = f"{mb.username} at {mb.host}:{mb.port} ({mb.tls})"
    # after = "flag" makes open() select without creating the move targets
    session = ImapSession(replace(mb, after="flag"))
    try:
        selected = await session.open()
        found = [f"logged in as {where}"]
        found.append(
            f"{mb.folder}: {selected.exists} message(s), UIDVALIDITY {selected.uidvalidity}"
        )
        shown = [c for c in WANTED_CAPABILITIES if c in session.capabilities]
        missing = [c for c in WANTED_CAPABILITIES if c not in session.capabilities]
        found.append(
            "capabilities: "
            + (" ".join(shown) or "none of " + " ".join(WANTED_CAPABILITIES))
            + (f" (no {' '.join(missing)})" if missing and shown else "")
        )
        if "IDLE" not in session.capabilities or not mb.use_idle:
            found.append(f"new mail is found by polling every {mb.poll_seconds:g} s")
        if mb.after == "move":
            for folder in (mb.processed_folder, mb.filtered_folder, mb.errors_folder):
                exists = await _exists(session, folder)
                found.append(
                    f"{session.folder(folder)}: "
                    + ("exists" if exists else "missing; created at the daemon's first start")
                )
        elif mb.after == "flag":
            found.append(f"processed mail is flagged {mb.keyword} and left in {mb.folder}")
        else:
            found.append(f"processed mail is deleted from {mb.folder}")
        return Probe(what, True, tuple(found))
    except ImapError as exc:
        return Probe(what, False, (f"{exc.kind}: {exc}", f"tried {where}"))
    except (TimeoutError, OSError) as exc:
        return Probe(what, False, (f"connect: {type(exc).__name__}: {exc}", f"tried {where}"))
    finally:
        await session.close()


async def _exists(session: ImapSession, folder: str) -> bool:
    assert session.client is not None
    name = session.folder(folder)
    response = await session._timed(session.client.list('""', quote(name)))
    return response.result == "OK" and any(
        isinstance(line, bytes | bytearray) and bytes(line).startswith(b"(")
        for line in response.lines
    )


async def relay(smtp: Smtp) -> Probe:
    """EHLO, TLS as configured, and the login when a username is set; no mail is sent."""
    where = f"{smtp.host}:{smtp.port} ({smtp.tls})"
    client = aiosmtplib.SMTP(
        hostname=smtp.host,
        port=smtp.port,
        use_tls=smtp.tls == "tls",
        start_tls=smtp.tls == "starttls",
        tls_context=tls_context(smtp.ca_file) if smtp.tls != "none" else None,
        validate_certs=smtp.tls != "none",
        timeout=smtp.timeout,
    )
    found: list[str] = []
    tried = f"tried {where}"
    try:
        password = await asyncio.to_thread(smtp.secret.reveal) if smtp.secret else None
        await client.connect()
        found.append(f"connected to {where}")
        if smtp.username and password is not None:
            await client.login(smtp.username, password)
            found.append(f"the relay accepts the login as {smtp.username}")
        else:
            found.append("no login configured: the relay must accept mail from this host")
        extensions = client.esmtp_extensions
        shown = [e for e in WANTED_EXTENSIONS if e.lower() in extensions]
        if "size" in extensions and extensions["size"].strip():
            shown[shown.index("SIZE")] = f"SIZE {extensions['size'].strip()}"
        found.append("extensions: " + (" ".join(shown) or "none of " + " ".join(WANTED_EXTENSIONS)))
        if "smtputf8" not in extensions:
            found.append("no SMTPUTF8: mail to a non-ASCII address cannot be sent through it")
        await client.quit()
        return Probe("smtp", True, tuple(found))
    except SecretError as exc:
        return Probe("smtp", False, (f"secret: cannot read the password: {exc}", tried))
    except aiosmtplib.SMTPAuthenticationError as exc:
        reason = f"auth: login as {smtp.username} refused ({exc.code} {exc.message})"
        return Probe("smtp", False, (reason, tried))
    except aiosmtplib.SMTPResponseException as exc:
        return Probe("smtp", False, (f"protocol: {exc.code} {exc.message}", tried))
    except ssl.SSLCertVerificationError as exc:
        return Probe("smtp", False, (f"tls: certificate not trusted ({exc.verify_message})", tried))
    except (aiosmtplib.SMTPException, ssl.SSLError, TimeoutError, OSError) as exc:
        return Probe("smtp", False, (f"connect: {type(exc).__name__}: {exc}", tried))
    finally:
        client.close()


async def graph_mailbox(mb) -> Probe:
    """A Graph mailbox: get a token, find the watched folder; never create a folder."""
    from triage.sources.graph import GraphSession
    from triage.sources.graph_auth import GraphError

    what = f"mailbox {mb.name}"
    where = f"{mb.user} through {mb.graph_url}"
    session = GraphSession(replace(mb, after="read"))  # read: open() creates no folder
    try:
        opened = await session.open()
    except GraphError as exc:
        return Probe(what, False, (f"{exc.kind}: {exc}", where))
    except (TimeoutError, OSError) as exc:
        return Probe(what, False, (f"connect: {type(exc).__name__}: {exc}", where))
    finally:
        await session.close()
    return Probe(
        what,
        True,
        (
            where,
            f"token for app {mb.credentials.client_id}: granted",
            f"{mb.folder}: {opened.total} message(s)",
        ),
    )


async def graph_sender(sending) -> Probe:
    """Graph's sendMail: a token for the app; nothing is sent (Mail.Send shows at the first)."""
    from triage.sources.graph_auth import GraphError, TokenSource

    where = f"sendMail as {sending.user} through {sending.graph_url}"
    try:
        await TokenSource(sending.credentials).token()
    except GraphError as exc:
        return Probe("smtp", False, (f"{exc.kind}: {exc}", where))
    return Probe("smtp", True, (where, f"token for app {sending.credentials.client_id}: granted"))


async def all_of(
    mailboxes: tuple[Mailbox, ...],
    smtp: Smtp | None,
    graph_mailboxes: tuple = (),
    graph_sending=None,
    max_connections: int = 100,
) -> list[Probe]:
    """Every probe, at once: one slow server does not hold up the report of the others.
    The mailboxes of one server are probed within the daemon's bounds (`max_connections`
    open at once, LOGINS_AT_ONCE logging in): a hundred mailboxes are not a hundred logins."""
    gates = Gates(mailboxes, max_connections)

    async def bounded(mb: Mailbox) -> Probe:
        async with gates.slot(mb), gates.login(mb):
            return await mailbox(mb)

    jobs = [bounded(mb) for mb in mailboxes]
    jobs += [graph_mailbox(mb) for mb in graph_mailboxes]
    if smtp is not None:
        jobs.append(relay(smtp))
    if graph_sending is not None:
        jobs.append(graph_sender(graph_sending))
    return list(await asyncio.gather(*jobs))
