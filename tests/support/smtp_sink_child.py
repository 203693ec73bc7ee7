"""The SMTP sink's child process (tests/support/smtp_sink.py): serve SMTP on 127.0.0.1 until
SIGTERM or SIGINT, or until the process that started it is gone.

Run by path (`python smtp_sink_child.py FOLDER`), so it imports only the standard library
and aiosmtpd. Its settings are FOLDER/sink.json; it writes the port it bound to FOLDER/port.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import sys
from pathlib import Path

HOST = "127.0.0.1"


def serve(folder: Path) -> None:
    """The child process: serve SMTP until SIGTERM/SIGINT."""
    import asyncio

    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

    config = json.loads((folder / "sink.json").read_text())
    reply_code = config.get("reply_code")
    auth = config.get("auth")

    class Handler:
        def __init__(self) -> None:
            self.n = 0

        async def handle_DATA(self, server, session, envelope) -> str:
            self.n += 1
            refused = reply_code is not None
            target = folder / ("refused" if refused else "messages")
            record = {
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "helo": session.host_name,
                "tls": session.ssl is not None,
                "authenticated": bool(session.authenticated),
            }
            data = envelope.original_content or b""
            for suffix, payload in ((".eml", data), (".json", json.dumps(record).encode())):
                tmp = target / f".{self.n}{suffix}.tmp"
                tmp.write_bytes(payload)
                os.replace(tmp, target / f"{self.n}{suffix}")  # .json last: marks it complete
            if refused:
                if reply_code >= 500:
                    return f"{reply_code} 5.7.1 Refused by the test sink"
                return f"{reply_code} 4.3.0 Try again later (test sink)"
            return f"250 2.0.0 OK queued as {self.n}"

    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth is not None
            and auth_data.login == auth[0].encode()
            and auth_data.password == auth[1].encode()
        )
        return AuthResult(success=ok, handled=False)

    tls_context = None
    if config.get("cert"):
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(config["cert"], config["key"])

    handler = Handler()
    kwargs = {
        "hostname": "localhost",  # no DNS lookup of the machine's name
        "decode_data": False,
        "enable_SMTPUTF8": config.get("smtputf8", True),
        "tls_context": tls_context,
        "require_starttls": tls_context is not None,
        "auth_required": auth is not None,
        "auth_require_tls": tls_context is not None,
        "authenticator": authenticator if auth is not None else None,
    }

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, int(config.get("port") or 0)))
        server = await loop.create_server(lambda: SMTP(handler, **kwargs), sock=sock)
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        tmp = folder / ".port.tmp"
        tmp.write_text(str(sock.getsockname()[1]))
        os.replace(tmp, folder / "port")
        parent = os.getppid()
        while not done.is_set():  # also end if the process that started us is gone
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.5)
            if os.getppid() != parent:
                break
        server.close()

    asyncio.run(serve())


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: smtp_sink_child.py FOLDER")
    serve(Path(sys.argv[1]))
