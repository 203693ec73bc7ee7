"""A local STAND-IN for Microsoft Graph mail and the Microsoft identity platform, for tests.

No Microsoft endpoint is reachable from tests. This process answers the requests triage makes
to `login.microsoftonline.com` (tenant discovery, the client-credentials grant) and to
`graph.microsoft.com/v1.0` (mail folders, delta query, `$value`, move, PATCH, sendMail,
subscriptions), the way Microsoft's published documentation and sample responses show. It is
a stand-in: it is not Microsoft Graph, and a behaviour it does not model is not tested here.

    from tests.support.graph_standin import GraphStandIn

    with GraphStandIn.start(tmp_path) as g:            # its own process, HTTPS on 127.0.0.1
        g.add_app("client-id", secret="s3cret")          # an app registration
        g.add_mailbox("support@contoso.example")
        g.deliver("support@contoso.example", "inbox", raw)
        g.fault("429", count=3, retry_after=1)           # faults: 429, 503, 410, drop
        g.folder("support@contoso.example", "Triage/Processed")   # what a folder holds

The handle talks to the process over its control API (/_standin/...). The process is stopped
by its own pid. Run it alone: python -m tests.support.graph_standin --port N --cert C --key K.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
from aiohttp import web
from cryptography import x509

from tests.support import graph_routes
from tests.support.certs import make_cert
from tests.support.daemon import REPO
from tests.support.graph_identity import App
from tests.support.graph_model import Mailbox
from tests.support.net import free_port, wait_for_port
from tests.support.procs import stop_child

TENANT = "8a4f9e2c-0c1d-4b6e-9f3a-5d7c2b1e0f64"


# -- the control API (in the stand-in's process) --------------------------------------------


def control(app: web.Application) -> None:
    r = app.router
    r.add_post("/_standin/app", _app)
    r.add_post("/_standin/mailbox", _mailbox)
    r.add_post("/_standin/deliver", _deliver)
    r.add_get("/_standin/folder", _folder)
    r.add_post("/_standin/fault", _fault)
    r.add_post("/_standin/set", _set)
    r.add_get("/_standin/stats", _stats)
    r.add_get("/_standin/subscriptions", _subscriptions)
    r.add_post("/_standin/lifecycle", _lifecycle)


def _state(request: web.Request) -> graph_routes.State:
    return request.app["state"]


async def _app(request: web.Request) -> web.Response:
    body = await request.json()
    state = _state(request)
    cert = body.get("certificate")
    app = state.identity.apps.get(body["client_id"]) or App(body["client_id"])
    app.secret = body.get("secret", app.secret)
    app.secret_expired = bool(body.get("secret_expired", app.secret_expired))
    app.certificate = x509.load_pem_x509_certificate(cert.encode()) if cert else app.certificate
    if "roles" in body:
        app.roles = set(body["roles"])
    if "mailboxes" in body:
        app.mailboxes = {m.lower() for m in body["mailboxes"]} if body["mailboxes"] else None
    app.disabled = bool(body.get("disabled", app.disabled))
    state.identity.apps[app.client_id] = app
    return web.json_response({"ok": True})


async def _mailbox(request: web.Request) -> web.Response:
    body = await request.json()
    state = _state(request)
    upn = body["upn"].lower()
    box = state.boxes.setdefault(upn, Mailbox.create(upn))
    return web.json_response({"id": box.id})


def _resolve(box: Mailbox, name: str, create: bool = False):
    found = box.folder(name) or box.path(name)
    if found is None and create:
        parent = None
        for part in name.split("/"):
            here = box.folder(part) if parent is None else None
            here = here or next(
                (f for f in box.children(parent) if f.name.lower() == part.lower()), None
            )
            here = here or box.add_folder(parent, part)
            parent = here.id
            found = here
    return found


async def _deliver(request: web.Request) -> web.Response:
    """Deliver `raws` (base64), or `generate` messages made here (for large backlogs)."""
    body = await request.json()
    state = _state(request)
    box = state.boxes[body["upn"].lower()]
    folder = _resolve(box, body.get("folder", "inbox"), create=True)
    raws = [base64.b64decode(r) for r in body.get("raws", [])]
    ids = []
    for raw in raws:
        ids.append(box.deliver(folder, raw).id)
        await graph_routes.notify(state, box, folder, ids[-1])
    for n in range(int(body.get("generate", 0))):
        box.deliver(folder, generated(body.get("prefix", "gen"), n, int(body.get("size", 600))))
    return web.json_response({"ids": ids})


def generated(prefix: str, n: int, size: int) -> bytes:
    """A plain message with a unique Message-ID, padded to about `size` bytes."""
    head = (
        f"From: Customer {n} <customer{n}@example.org>\r\n"
        f"To: support@contoso.example\r\n"
        f"Subject: Printer {n} is down\r\n"
        f"Date: Tue, 10 Mar 2026 14:30:00 +0000\r\n"
        f"Message-ID: <{prefix}-{n}@example.org>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode()
    line = b"The printer on the third floor shows an error and prints nothing.\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


async def _folder(request: web.Request) -> web.Response:
    state = _state(request)
    box = state.boxes[request.query["upn"].lower()]
    folder = _resolve(box, request.query["folder"])
    if folder is None:
        return web.json_response({"exists": False, "messages": []})
    raw = request.query.get("raw") == "1"
    out = []
    for mid in folder.members:
        m = box.messages[mid]
        item = {
            "id": m.id,
            "internetMessageId": m.internet_message_id,
            "isRead": m.is_read,
            "categories": m.categories,
        }
        if raw:
            item["raw"] = base64.b64encode(m.raw).decode()
        out.append(item)
    parent = box.folders.get(folder.parent_id) if folder.parent_id else None
    return web.json_response(
        {
            "exists": True,
            "id": folder.id,
            "parent": parent.name if parent else None,
            "messages": out,
        }
    )


async def _fault(request: web.Request) -> web.Response:
    body = await request.json()
    _state(request).faults.append(
        graph_routes.Fault(
            body["kind"], int(body.get("count", 1)), body.get("match", ""), body.get("retry_after")
        )
    )
    return web.json_response({"ok": True})


async def _set(request: web.Request) -> web.Response:
    """Knobs: token lifetime, expire all tokens, expire delta tokens, concurrency, lost notices."""
    body = await request.json()
    state = _state(request)
    if "token_lifetime" in body:
        state.identity.lifetime = int(body["token_lifetime"])
    if body.get("expire_tokens"):
        state.identity.expire_all()
    if "expire_delta" in body:
        box = state.boxes[body["expire_delta"].lower()]
        box.generation += 1
    if "concurrency" in body:
        state.concurrency = int(body["concurrency"])
    if "drop_notifications" in body:
        state.notify_drop = int(body["drop_notifications"])
    return web.json_response({"ok": True})


async def _stats(request: web.Request) -> web.Response:
    state = _state(request)
    sent = {upn: [base64.b64encode(r).decode() for r in b.sent] for upn, b in state.boxes.items()}
    return web.json_response(
        {
            **state.stats,
            "tokens_issued": state.identity.issued,
            "outgoing": sent,
            "notified": state.notified,
        }
    )


async def _subscriptions(request: web.Request) -> web.Response:
    subs = [graph_routes._public(s) for s in _state(request).subscriptions.values()]
    return web.json_response({"value": subs})


async def _lifecycle(request: web.Request) -> web.Response:
    body = await request.json()
    ok = await graph_routes.lifecycle(_state(request), body["subscription"], body["event"])
    return web.json_response({"ok": ok})


def build(tenant: str, base: str) -> web.Application:
    app = web.Application(middlewares=[graph_routes.faults], client_max_size=64 * 1024 * 1024)
    app["state"] = graph_routes.State(tenant, base)
    graph_routes.routes(app)
    control(app)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Graph stand-in for triage's tests")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--tenant", default=TENANT)
    args = parser.parse_args(argv)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    app = build(args.tenant, f"https://127.0.0.1:{args.port}")
    web.run_app(
        app, host="127.0.0.1", port=args.port, ssl_context=context, print=None, access_log=None
    )


# -- the handle (in the test's process) ------------------------------------------------------


class GraphStandIn:
    """A running stand-in process and a client for its control API."""

    def __init__(self, proc: subprocess.Popen, port: int, ca_file: Path, tenant: str) -> None:
        self.proc, self.port, self.ca_file, self.tenant = proc, port, ca_file, tenant
        self.http = httpx.Client(
            base_url=self.url, verify=ssl.create_default_context(cafile=str(ca_file)), timeout=30
        )

    @classmethod
    def start(cls, tmpdir: Path, tenant: str = TENANT) -> GraphStandIn:
        cert, key = make_cert(Path(tmpdir) / "graph-standin")
        port = free_port()
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.graph_standin",
                "--port",
                str(port),
                "--cert",
                str(cert),
                "--key",
                str(key),
                "--tenant",
                tenant,
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(Path(tmpdir) / "graph-standin.log", "ab"),  # noqa: SIM115 - the child keeps it
        )
        try:
            wait_for_port("127.0.0.1", port, timeout=20)
        except TimeoutError:
            stop_child(proc, 15, 5)
            raise
        return cls(proc, port, cert, tenant)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.http.close()
        stop_child(self.proc, 15, 10)  # this pid only

    def __enter__(self) -> GraphStandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _post(self, path: str, body: dict) -> dict:
        answer = self.http.post(f"/_standin/{path}", json=body)
        answer.raise_for_status()
        return answer.json()

    # set-up
    def add_app(self, client_id: str, **settings: object) -> None:
        self._post("app", {"client_id": client_id, **settings})

    def add_mailbox(self, upn: str) -> str:
        return self._post("mailbox", {"upn": upn})["id"]

    def deliver(self, upn: str, folder: str, *raws: bytes) -> list[str]:
        return self._post(
            "deliver",
            {"upn": upn, "folder": folder, "raws": [base64.b64encode(r).decode() for r in raws]},
        )["ids"]

    def generate(self, upn: str, folder: str, count: int, size: int = 600, prefix: str = "gen"):
        self._post(
            "deliver",
            {"upn": upn, "folder": folder, "generate": count, "size": size, "prefix": prefix},
        )

    def fault(self, kind: str, count: int = 1, match: str = "", retry_after: float | None = 1.0):
        self._post(
            "fault", {"kind": kind, "count": count, "match": match, "retry_after": retry_after}
        )

    def set(self, **knobs: object) -> None:
        self._post("set", knobs)

    def lifecycle(self, subscription: str, event: str) -> bool:
        return self._post("lifecycle", {"subscription": subscription, "event": event})["ok"]

    # looking
    def folder(self, upn: str, folder: str, raw: bool = False) -> dict:
        answer = self.http.get(
            "/_standin/folder", params={"upn": upn, "folder": folder, "raw": "1" if raw else "0"}
        )
        answer.raise_for_status()
        return answer.json()

    def message_ids(self, upn: str, folder: str) -> list[str]:
        """The Message-ID headers of what `folder` holds, in arrival order."""
        return [m["internetMessageId"] for m in self.folder(upn, folder)["messages"]]

    def stats(self) -> dict:
        answer = self.http.get("/_standin/stats")
        answer.raise_for_status()
        return answer.json()

    def sent(self, upn: str) -> list[bytes]:
        return [base64.b64decode(r) for r in self.stats()["outgoing"].get(upn.lower(), [])]

    def subscriptions(self) -> list[dict]:
        return self.http.get("/_standin/subscriptions").json()["value"]


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
    asyncio.set_event_loop(None)
