"""The stand-in's HTTP face: Microsoft Graph v1.0 mail endpoints, the token endpoint, faults.

A STAND-IN, not Microsoft Graph: it answers the requests triage makes the way Microsoft's
published documentation and sample responses show, and nothing else. Where the documentation
leaves a choice open, the comment says what the stand-in does.

Faults (set through the control API, /_standin/...): "429" and "503" (with Retry-After),
"410" (a delta request with a state token), "drop" (the connection is closed with no answer).
Each fault has a count and an optional text its request's path must contain.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import email.parser
import email.policy
import email.utils
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

from aiohttp import ClientSession, ClientTimeout, web

from tests.support.graph_identity import Identity
from tests.support.graph_model import Folder, Mailbox, SyncState, delta_page, graph_id

MAX_PAGE = 1000
DEFAULT_PAGE = 10
SUBSCRIPTION_MAX_MINUTES = 10080  # Outlook resources: under 7 days in today's documentation
SEND_MAX_BYTES = 4 * 1024 * 1024  # MIME sent through sendMail


@dataclass
class Fault:
    kind: str  # 429 | 503 | 410 | drop
    count: int
    match: str = ""
    retry_after: float | None = 1.0


class State:
    """Everything the stand-in holds; one per process."""

    def __init__(self, tenant: str, base: str) -> None:
        self.identity = Identity(tenant, base)
        self.base = base
        self.boxes: dict[str, Mailbox] = {}
        self.faults: list[Fault] = []
        self.concurrency = 4  # Outlook: four concurrent requests per app and mailbox
        self.in_flight: dict[str, int] = {}
        self.stats: dict[str, int] = {}
        self.subscriptions: dict[str, dict] = {}
        self.notify_drop = 0  # change notifications to lose (they are best effort)
        self.notified: list[dict] = []

    def box(self, who: str) -> Mailbox | None:
        who = unquote(who).lower()
        found = self.boxes.get(who)
        if found is None:
            found = next((b for b in self.boxes.values() if b.id.lower() == who), None)
        return found

    def count(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n


def graph_error(status: int, code: str, message: str, headers: dict | None = None) -> web.Response:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    rid = str(uuid.uuid4())
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"date": stamp, "request-id": rid, "client-request-id": rid},
        }
    }
    return web.json_response(body, status=status, headers=headers)


def _fault_for(state: State, request: web.Request) -> Fault | None:
    url = str(request.rel_url)
    for fault in state.faults:
        if fault.count <= 0 or fault.match not in url:
            continue
        if fault.kind == "410" and "token=" not in url:
            continue
        fault.count -= 1
        return fault
    return None


_NAMED = {"sendMail", "$value", "move", "delta", "token", "openid-configuration", "childFolders"}


@web.middleware
async def faults(request: web.Request, handler):
    state: State = request.app["state"]
    if request.path.startswith("/_standin/"):
        return await handler(request)
    state.count("requests")
    last = request.path.rsplit("/", 1)[-1]
    state.count("hit " + (last if last in _NAMED else request.method))  # "hit sendMail" ...
    fault = _fault_for(state, request)
    if fault is not None:
        state.count(f"fault_{fault.kind}")
        if fault.kind == "drop":
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("dropped by the stand-in")
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        if fault.kind == "429":
            return graph_error(
                429,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
                headers,
            )
        if fault.kind == "503":
            return graph_error(
                503, "ServiceUnavailable", "Service is temporarily unavailable.", headers
            )
        if fault.kind == "410":
            return graph_error(
                410,
                "syncStateNotFound",
                "The sync state generation is not found. The delta token is expired and data "
                "must be synchronized again.",
            )
    return await handler(request)


async def authorized(request: web.Request, role: str, who: str) -> Mailbox | web.Response:
    """The mailbox `who` if the bearer token's app may use it with `role`; else Graph's error."""
    state: State = request.app["state"]
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else ""
    client_id, why = state.identity.check(token)
    if client_id is None:
        return graph_error(
            401,
            "InvalidAuthenticationToken",
            why,
            {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
        )
    app = state.identity.apps[client_id]
    box = state.box(who)
    if box is None:
        return graph_error(
            404, "ErrorInvalidUser", f"The requested user '{unquote(who)}' is invalid."
        )
    if role not in app.roles and not (role == "Mail.Read" and "Mail.ReadWrite" in app.roles):
        return graph_error(
            403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
        )
    if app.mailboxes is not None and box.upn not in app.mailboxes:
        return graph_error(
            403,
            "ErrorAccessDenied",
            "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly "
            "AccessPolicy settings.",
        )
    return box


class Busy:
    """Counts a mailbox's requests in flight; over the limit is a 429 (MailboxConcurrency)."""

    def __init__(self, state: State, box: Mailbox) -> None:
        self.state, self.box = state, box

    def __enter__(self) -> web.Response | None:
        n = self.state.in_flight.get(self.box.upn, 0) + 1
        self.state.in_flight[self.box.upn] = n
        self.state.stats["max_in_flight"] = max(self.state.stats.get("max_in_flight", 0), n)
        if n > self.state.concurrency:
            self.state.count("concurrency_429")
            return graph_error(
                429,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
                {"Retry-After": "1"},
            )
        return None

    def __exit__(self, *exc: object) -> None:
        self.state.in_flight[self.box.upn] -= 1


def routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration)
    r.add_post("/{tenant}/oauth2/v2.0/token", token)
    base = "/v1.0/users/{user}"
    r.add_get(base + "/mailFolders", list_folders)
    r.add_post(base + "/mailFolders", create_folder)
    r.add_get(base + "/mailFolders/{folder}", get_folder)
    r.add_get(base + "/mailFolders/{folder}/childFolders", list_folders)
    r.add_post(base + "/mailFolders/{folder}/childFolders", create_folder)
    r.add_get(base + "/mailFolders/{folder}/messages/delta", delta)
    r.add_get(base + "/messages/{message}/$value", mime)
    r.add_get(base + "/messages/{message}", get_message)
    r.add_patch(base + "/messages/{message}", patch_message)
    r.add_post(base + "/messages/{message}/move", move)
    r.add_post(base + "/sendMail", send_mail)
    r.add_post("/v1.0/subscriptions", create_subscription)
    r.add_patch("/v1.0/subscriptions/{id}", renew_subscription)
    r.add_delete("/v1.0/subscriptions/{id}", delete_subscription)


# -- identity -----------------------------------------------------------------------------


async def openid_configuration(request: web.Request) -> web.Response:
    status, body = request.app["state"].identity.openid_configuration(request.match_info["tenant"])
    return web.json_response(body, status=status)


async def token(request: web.Request) -> web.Response:
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    state: State = request.app["state"]
    state.count("token_requests")
    status, body = state.identity.grant(request.match_info["tenant"], form)
    return web.json_response(body, status=status)


# -- folders ------------------------------------------------------------------------------


def _folder(box: Mailbox, request: web.Request) -> Folder | web.Response:
    key = unquote(request.match_info["folder"])
    found = box.folder(key)
    if found is None:
        return graph_error(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    return found


async def get_folder(request: web.Request) -> web.Response:
    box = await authorized(request, "Mail.Read", request.match_info["user"])
    if isinstance(box, web.Response):
        return box
    folder = _folder(box, request)
    if isinstance(folder, web.Response):
        return folder
    return web.json_response(folder.resource(box))


async def list_folders(request: web.Request) -> web.Response:
    box = await authorized(request, "Mail.Read", request.match_info["user"])
    if isinstance(box, web.Response):
        return box
    parent = None
    if "folder" in request.match_info:
        folder = _folder(box, request)
        if isinstance(folder, web.Response):
            return folder
        parent = folder.id
    found = box.children(parent)
    wanted = request.query.get("$filter", "")
    if wanted:  # the one filter triage sends: displayName eq 'Name' ('' doubles a quote)
        prefix = "displayName eq '"
        if not (wanted.startswith(prefix) and wanted.endswith("'")):
            return graph_error(400, "ErrorInvalidUrlQueryFilter", "The query filter is invalid.")
        name = wanted[len(prefix) : -1].replace("''", "'")
        found = [f for f in found if f.name.lower() == name.lower()]
    return web.json_response({"value": [f.resource(box) for f in found]})


async def create_folder(request: web.Request) -> web.Response:
    box = await authorized(request, "Mail.ReadWrite", request.match_info["user"])
    if isinstance(box, web.Response):
        return box
    parent = None
    if "folder" in request.match_info:
        folder = _folder(box, request)
        if isinstance(folder, web.Response):
            return folder
        parent = folder.id
    body = await request.json()
    name = str(body.get("displayName", "")).strip()
    if not name:
        return graph_error(
            400, "ErrorInvalidRequest", "The request is invalid: displayName is required."
        )
    made = box.add_folder(parent, name)
    if made is None:
        return graph_error(
            409,
            "ErrorFolderExists",
            "A folder with the specified name already exists.",
        )
    return web.json_response(made.resource(box), status=201)


# -- reading ------------------------------------------------------------------------------


async def delta(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    box = await authorized(request, "Mail.Read", request.match_info["user"])
    if isinstance(box, web.Response):
        return box
    folder = _folder(box, request)
    if isinstance(folder, web.Response):
        return folder
    with Busy(state, box) as busy:
        if busy is not None:
            return busy
        token = request.query.get("$deltatoken") or request.query.get("$skiptoken")
        if token:
            sync = SyncState.parse(token)
            if sync is None or sync.folder != folder.id or sync.issued != box.generation:
                state.count("gone_410")
                return graph_error(
                    410,
                    "syncStateNotFound",
                    "The sync state generation is not found. The delta token is expired and "
                    "data must be synchronized again.",
                    {"Location": _delta_url(state, box, folder, None)},
                )
            if request.query.get("$deltatoken"):  # a new round: the changes up to now
                sync = dataclasses.replace(sync, after=sync.since, until=box.change)
        else:
            select = request.query.get("$select")
            sync = SyncState(
                folder.id,
                -1,
                box.change,
                -1,
                box.generation,
                tuple(s.strip() for s in select.split(",")) if select else None,
                request.query.get("changeType"),
            )
        size = DEFAULT_PAGE
        prefer = request.headers.get("Prefer", "")
        for part in prefer.split(","):
            name, _, value = part.strip().partition("=")
            if name == "odata.maxpagesize" and value.isdigit():
                size = max(1, min(int(value), MAX_PAGE))
        items, following, done = delta_page(box, folder, sync, size)
        state.count("delta_pages")
        body = {
            "@odata.context": f"{state.base}/v1.0/$metadata#Collection(message)",
            "value": items,
        }
        key = "@odata.deltaLink" if done else "@odata.nextLink"
        body[key] = _delta_url(state, box, folder, following, done)
        return web.json_response(body, headers={"Preference-Applied": f"odata.maxpagesize={size}"})


def _delta_url(state: State, box: Mailbox, folder: Folder, sync, done: bool = True) -> str:
    url = f"{state.base}/v1.0/users/{box.id}/mailFolders/{quote(folder.id, safe='')}/messages/delta"
    if sync is None:
        return url
    return url + ("?$deltatoken=" if done else "?$skiptoken=") + sync.token()


async def _message(request: web.Request, role: str):
    state: State = request.app["state"]
    box = await authorized(request, role, request.match_info["user"])
    if isinstance(box, web.Response):
        return None, box
    message = box.messages.get(unquote(request.match_info["message"]))
    if message is None:
        return box, graph_error(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    state.count("message_requests")
    return box, message


async def mime(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    box, message = await _message(request, "Mail.Read")
    if isinstance(message, web.Response):
        return message
    with Busy(state, box) as busy:
        if busy is not None:
            return busy
        state.count("mime")
        await asyncio.sleep(0)
        return web.Response(body=message.raw, content_type="text/plain")


async def get_message(request: web.Request) -> web.Response:
    box, message = await _message(request, "Mail.Read")
    if isinstance(message, web.Response):
        return message
    select = request.query.get("$select")
    return web.json_response(message.resource(select.split(",") if select else None))


async def patch_message(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    box, message = await _message(request, "Mail.ReadWrite")
    if isinstance(message, web.Response):
        return message
    with Busy(state, box) as busy:
        if busy is not None:
            return busy
        body = await request.json()
        categories = body.get("categories")
        box.update(
            message,
            is_read=body.get("isRead"),
            categories=list(categories) if categories is not None else None,
        )
        state.count("patched")
        return web.json_response(message.resource(None))


async def move(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    box, message = await _message(request, "Mail.ReadWrite")
    if isinstance(message, web.Response):
        return message
    with Busy(state, box) as busy:
        if busy is not None:
            return busy
        body = await request.json()
        target = box.folder(str(body.get("destinationId", "")))
        if target is None:
            return graph_error(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        moved = box.move(message, target)
        state.count("moved")
        await notify(state, box, target, moved.id)
        return web.json_response(moved.resource(None), status=201)


# -- sending ------------------------------------------------------------------------------


async def send_mail(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    box = await authorized(request, "Mail.Send", request.match_info["user"])
    if isinstance(box, web.Response):
        return box
    body = await request.read()
    kind = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if kind != "text/plain":  # triage sends MIME; the JSON form is only checked, not modelled
        return graph_error(
            400, "ErrorInvalidRequest", "The stand-in takes sendMail as MIME (text/plain) only."
        )
    if len(body) > SEND_MAX_BYTES * 4 // 3 + 4:
        return graph_error(
            413, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size."
        )
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return graph_error(
            400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
        )
    head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    sender = email.utils.parseaddr(str(head.get("From", "")))[1]
    if sender and sender.lower() != box.upn:
        return graph_error(
            403,
            "ErrorSendAsDenied",
            "The user account which was used to submit this request does not have the right "
            "to send mail on behalf of the specified sending account., Cannot submit message.",
        )
    recipients = [
        a for _, a in email.utils.getaddresses(head.get_all("To", []) + head.get_all("Cc", []))
    ]
    bad = [a for a in recipients if "@" not in a or a.startswith("@") or a.endswith("@")]
    if not recipients or bad:
        who = bad[0] if bad else ""
        return graph_error(
            400,
            "ErrorInvalidRecipients",
            f"At least one recipient is not valid., Recipient '{who}' is not resolved. All "
            "recipients must be resolved before a message can be submitted.",
        )
    box.sent.append(raw)
    sent_items = box.folder("sentitems")
    assert sent_items is not None
    box.deliver(sent_items, raw, is_read=True)
    state.count("sent")
    return web.Response(status=202)


# -- change notifications ---------------------------------------------------------------


def _subscribed_folder(state: State, resource: str) -> tuple[Mailbox, Folder] | None:
    """users/{id}/mailFolders('{id}')/messages, with or without the quotes and parentheses."""
    parts = resource.strip("/").replace("('", "/").replace("')", "").split("/")
    if len(parts) != 5 or parts[0].lower() != "users" or parts[2].lower() != "mailfolders":
        return None
    box = state.box(parts[1])
    folder = box.folder(unquote(parts[3])) if box else None
    if box is None or folder is None or parts[4].lower() != "messages":
        return None
    return box, folder


async def _validate(url: str, timeout: float = 10.0) -> bool:
    """POST url?validationToken=...; the endpoint must answer 200 with the token as text."""
    check = (
        "Validation: Testing client application reachability for subscription Request-Id: "
        + str(uuid.uuid4())
    )
    try:
        async with (
            ClientSession(timeout=ClientTimeout(total=timeout)) as session,
            session.post(
                url, params={"validationToken": check}, headers={"Content-Type": "text/plain"}
            ) as answer,
        ):
            return answer.status == 200 and (await answer.text()) == check
    except Exception:  # noqa: BLE001 - whatever went wrong, the validation failed
        return False


def _https_or_local(url: str) -> bool:
    # Graph takes only https URLs; the stand-in also takes http on 127.0.0.1 for tests.
    return url.startswith("https://") or url.startswith("http://127.0.0.1:")


async def create_subscription(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    body = await request.json()
    target = _subscribed_folder(state, str(body.get("resource", "")))
    if target is None:
        return graph_error(400, "InvalidRequest", "Resource not found or not supported.")
    box, folder = target
    check = await authorized(request, "Mail.Read", box.id)
    if isinstance(check, web.Response):
        return check
    url = str(body.get("notificationUrl", ""))
    lifecycle = body.get("lifecycleNotificationUrl")
    expires = _expiry(body.get("expirationDateTime"))
    if isinstance(expires, web.Response):
        return expires
    if not _https_or_local(url) or (lifecycle and not _https_or_local(str(lifecycle))):
        return graph_error(400, "InvalidRequest", "Subscription notificationUrl must be https.")
    for each in filter(None, [url, lifecycle]):
        if not await _validate(str(each)):
            return graph_error(
                400,
                "InvalidRequest",
                "Subscription validation request failed. Notification endpoint must respond "
                "with 200 OK to validation request.",
            )
    sid = str(uuid.uuid4())
    sub = {
        "id": sid,
        "resource": body["resource"],
        "changeType": body.get("changeType", "created"),
        "clientState": body.get("clientState"),
        "notificationUrl": url,
        "lifecycleNotificationUrl": lifecycle,
        "expirationDateTime": expires,
        "applicationId": "standin",
        "latestSupportedTlsVersion": "v1_2",
        "_box": box.upn,
        "_folder": folder.id,
    }
    state.subscriptions[sid] = sub
    state.count("subscriptions_created")
    return web.json_response(_public(sub), status=201)


def _expiry(value) -> str | web.Response:
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return graph_error(400, "InvalidRequest", "expirationDateTime is required.")
    now = datetime.now(UTC)
    if when > now + timedelta(minutes=SUBSCRIPTION_MAX_MINUTES):
        return graph_error(
            400,
            "InvalidRequest",
            f"Subscription expiration can only be {SUBSCRIPTION_MAX_MINUTES} minutes in the future.",
        )
    if when <= now:
        return graph_error(400, "InvalidRequest", "Subscription expiration must be in the future.")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def _public(sub: dict) -> dict:
    return {k: v for k, v in sub.items() if not k.startswith("_")}


async def renew_subscription(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    sub = state.subscriptions.get(request.match_info["id"])
    if sub is None:
        return graph_error(404, "ResourceNotFound", "The object was not found.")
    body = await request.json()
    expires = _expiry(body.get("expirationDateTime"))
    if isinstance(expires, web.Response):
        return expires
    sub["expirationDateTime"] = expires
    state.count("subscriptions_renewed")
    return web.json_response(_public(sub))


async def delete_subscription(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    if state.subscriptions.pop(request.match_info["id"], None) is None:
        return graph_error(404, "ResourceNotFound", "The object was not found.")
    return web.Response(status=204)


async def notify(state: State, box: Mailbox, folder: Folder, message_id: str) -> None:
    """Tell every subscription on `folder` that a message was created there (best effort)."""
    for sub in list(state.subscriptions.values()):
        if sub["_box"] != box.upn or sub["_folder"] != folder.id:
            continue
        if state.notify_drop > 0:
            state.notify_drop -= 1
            state.count("notifications_dropped")
            continue
        resource = f"Users/{box.id}/Messages/{message_id}"
        payload = {
            "value": [
                {
                    "subscriptionId": sub["id"],
                    "subscriptionExpirationDateTime": sub["expirationDateTime"],
                    "changeType": "created",
                    "resource": resource,
                    "resourceData": {
                        "@odata.type": "#Microsoft.Graph.Message",
                        "@odata.id": resource,
                        "id": message_id,
                    },
                    "clientState": sub["clientState"],
                    "tenantId": state.identity.tenant,
                }
            ]
        }
        asyncio.ensure_future(_post(state, sub["notificationUrl"], payload, "notifications"))


async def lifecycle(state: State, sid: str, event: str) -> bool:
    sub = state.subscriptions.get(sid)
    if sub is None or not sub.get("lifecycleNotificationUrl"):
        return False
    if event == "subscriptionRemoved":
        state.subscriptions.pop(sid, None)
    payload = {
        "value": [
            {
                "lifecycleEvent": event,
                "subscriptionId": sid,
                "subscriptionExpirationDateTime": sub["expirationDateTime"],
                "clientState": sub["clientState"],
                "tenantId": state.identity.tenant,
                "resource": sub["resource"],
            }
        ]
    }
    # posted in the background: the test that asked may be the one serving the endpoint
    asyncio.ensure_future(_post(state, sub["lifecycleNotificationUrl"], payload, "lifecycle"))
    return True


async def _post(state: State, url: str, payload: dict, what: str) -> bool:
    started = time.monotonic()
    try:
        async with (
            ClientSession(timeout=ClientTimeout(total=3)) as session,
            session.post(url, json=payload) as answer,
        ):
            ok = answer.status in (200, 202)
    except Exception:  # noqa: BLE001 - a notification that cannot be delivered is dropped
        ok = False
    state.notified.append(
        {"what": what, "url": url, "ok": ok, "seconds": time.monotonic() - started, **payload}
    )
    state.count(f"{what}_{'sent' if ok else 'failed'}")
    return ok


def new_message_id() -> str:
    return graph_id()
