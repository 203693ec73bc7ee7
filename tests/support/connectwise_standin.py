"""A STAND-IN for ConnectWise Manage's REST API 3.0: not ConnectWise, a local server that checks
the requests the published API defines and keeps tickets and notes, for the sink's tests.

No real ConnectWise server is reachable from here. This stand-in is written from the vendor's
published API (service tickets, their notes, `conditions` queries) and is strict where the
published API is: every request must carry Basic auth `companyId+publicKey:privateKey`, the
`clientId` header and an `Accept: application/vnd.connectwise.com+json; version=YEAR.N`;
POST /service/tickets requires `summary` (at most 100 characters) and `company` (by id or
identifier, known here), checks the board, priority and status ids it is given and the
published length limits, and refuses fields the Ticket model does not have; a note requires
`text`. Where the published API leaves a behaviour open the stand-in says so in a comment.

    from tests.support.connectwise_standin import ConnectWiseStandIn

    with ConnectWiseStandIn.start() as cw:      # a thread on 127.0.0.1; stops cleanly on exit
        cw.site                                 # http://127.0.0.1:PORT (the sink's `site`)
        cw.then(PASS, LOSE)                     # answer one request, do the next and drop its answer
        cw.tickets, cw.notes, cw.requests
"""

from __future__ import annotations

import base64
import itertools
import re
import threading
from dataclasses import dataclass, field

from tests.support.http_receiver import HOST, Reply, Request, Server

COMPANY_ID, PUBLIC_KEY, PRIVATE_KEY = "examplecorp", "pUbL1c", "pr1vAt3"
CLIENT_ID = "6c7a0d4e-1f2b-4c3d-9e8f-a1b2c3d4e5f6"
CODEBASE = "v4_6_release"
LOSE = Reply("lose")  # do what the request asks, then close without answering
PASS = Reply("pass")  # answer as usual (to queue a LOSE behind requests that go through)

# The Ticket model's fields (the published POST /service/tickets body), and those notes take.
TICKET_FIELDS = frozenset(
    [
        "id",
        "summary",
        "recordType",
        "board",
        "status",
        "workRole",
        "workType",
        "company",
        "site",
        "siteName",
        "addressLine1",
        "addressLine2",
        "city",
        "stateIdentifier",
        "zip",
        "country",
        "contact",
        "contactName",
        "contactPhoneNumber",
        "contactPhoneExtension",
        "contactEmailAddress",
        "type",
        "subType",
        "item",
        "team",
        "owner",
        "priority",
        "serviceLocation",
        "source",
        "requiredDate",
        "budgetHours",
        "opportunity",
        "agreement",
        "agreementType",
        "severity",
        "impact",
        "externalXRef",
        "poNumber",
        "knowledgeBaseCategoryId",
        "knowledgeBaseSubCategoryId",
        "allowAllClientsPortalView",
        "customerUpdatedFlag",
        "automaticEmailContactFlag",
        "automaticEmailResourceFlag",
        "automaticEmailCcFlag",
        "automaticEmailCc",
        "initialDescription",
        "initialInternalAnalysis",
        "initialResolution",
        "initialDescriptionFrom",
        "contactEmailLookup",
        "processNotifications",
        "skipCallback",
        "customFields",
    ]
)
MAX_LENGTH = {
    "summary": 100,
    "externalXRef": 100,
    "contactName": 62,
    "contactEmailAddress": 250,
    "poNumber": 50,
    "siteName": 50,
}
NOTE_FIELDS = frozenset(
    [
        "text",
        "detailDescriptionFlag",
        "internalAnalysisFlag",
        "resolutionFlag",
        "issueFlag",
        "member",
        "contact",
        "customerUpdatedFlag",
        "processNotifications",
        "internalFlag",
        "externalFlag",
    ]
)
_ACCEPT = re.compile(r"application/vnd\.connectwise\.com\+json; *version=\d{4}\.\d{1,2}")
# conditions: `field = value` joined by `and`; strings in double quotes, numbers, booleans
_CONDITION = re.compile(
    r"\s*(?P<field>[A-Za-z][A-Za-z0-9/]*)\s*(?P<op>=|!=)\s*"
    r'(?P<value>"(?:[^"\\]|\\.)*"|-?\d+|true|false)\s*(?:(?P<join>and)\s+|$)',
    re.IGNORECASE,
)


@dataclass
class ConnectWiseStandIn:
    companies: dict[str, int] = field(default_factory=lambda: {"AcmeCorp": 19, "Catchall": 2})
    boards: dict[int, set[int]] = field(default_factory=lambda: {1: {11, 12}, 7: {71}})
    priorities: frozenset[int] = frozenset({4, 5, 6, 7, 8})
    tickets: dict[int, dict] = field(default_factory=dict)
    notes: dict[int, list[dict]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1001)
        self._note_ids = itertools.count(50001)
        self._queue: list[Reply] = []
        self._lock = threading.Lock()
        self.server = Server(self._handle, None)
        self.port = self.server.server_address[1]
        self.site = f"http://{HOST}:{self.port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @classmethod
    def start(cls, **kwargs) -> ConnectWiseStandIn:
        cw = cls(**kwargs)
        cw._thread.start()
        return cw

    def then(self, *replies: Reply) -> ConnectWiseStandIn:
        with self._lock:
            self._queue.extend(replies)
        return self

    def stop(self) -> None:
        self.server.stop()
        self._thread.join(timeout=10)

    def __enter__(self) -> ConnectWiseStandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the API ---------------------------------------------------------------------------

    def _handle(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            queued = self._queue.pop(0) if self._queue else None
            if queued is not None and queued.kind not in ("lose", "pass"):
                return queued
            reply = self._serve(request)
            return Reply.close() if queued is not None and queued.kind == "lose" else reply

    def _serve(self, r: Request) -> Reply:
        prefix = f"/{CODEBASE}/apis/3.0"
        if not r.path.startswith(prefix + "/"):
            return _error(404, "NotFound", f"no API at {r.path}")
        wrong = self._credentials(r)
        if wrong:
            return wrong
        path = r.path[len(prefix) :]
        if r.method == "POST" and path == "/service/tickets":
            return self._create(r)
        if r.method == "GET" and path == "/service/tickets":
            return self._query(r, list(self.tickets.values()))
        if m := re.fullmatch(r"/service/tickets/(\d+)", path):
            if r.method == "GET" and int(m[1]) in self.tickets:
                return Reply.json(200, self.tickets[int(m[1])])
            return _error(404, "NotFound", f"ticket {m[1]} not found")
        if m := re.fullmatch(r"/service/tickets/(\d+)/notes", path):
            ticket = int(m[1])
            if ticket not in self.tickets:
                return _error(404, "NotFound", f"ticket {ticket} not found")
            if r.method == "POST":
                return self._note(r, ticket)
            if r.method == "GET":
                return self._query(r, self.notes.get(ticket, []))
        return _error(404, "NotFound", f"{r.method} {path} is not served by the stand-in")

    def _credentials(self, r: Request) -> Reply | None:
        auth = r.headers.get("authorization", "")
        expected = base64.b64encode(f"{COMPANY_ID}+{PUBLIC_KEY}:{PRIVATE_KEY}".encode()).decode()
        if auth != f"Basic {expected}":
            return _error(401, "Unauthorized", "Basic companyId+publicKey:privateKey required")
        if r.headers.get("clientid") != CLIENT_ID:
            return _error(401, "Unauthorized", "clientId header missing or unknown")
        if not _ACCEPT.fullmatch(r.headers.get("accept", "")):
            return _error(400, "InvalidVersion", "Accept must name the API version")
        if r.method in ("POST", "PUT", "PATCH") and not r.headers.get(
            "content-type", ""
        ).startswith("application/json"):
            return _error(415, "UnsupportedMediaType", "JSON bodies only")
        return None

    def _create(self, r: Request) -> Reply:
        body, bad = _object(r)
        if bad:
            return bad
        unknown = sorted(set(body) - TICKET_FIELDS)
        if unknown:
            return _invalid(unknown[0], "is not a field of Ticket")
        summary = body.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            return _invalid("summary", "is required")
        for name, limit in MAX_LENGTH.items():
            if isinstance(body.get(name), str) and len(body[name]) > limit:
                return _invalid(name, f"is longer than {limit}")
        company = body.get("company")
        company_id = None
        if isinstance(company, dict):
            if company.get("identifier") in self.companies:
                company_id = self.companies[company["identifier"]]
            elif company.get("id") in self.companies.values():
                company_id = company["id"]
        if company_id is None:
            return _invalid("company", "is required and must name a known company")
        board = _ref(body, "board") or 1  # the published API leaves the default board open
        if board not in self.boards:
            return _invalid("board", f"board {board} not found")
        status = _ref(body, "status")
        if status is not None and status not in self.boards[board]:
            return _invalid("status", f"status {status} is not a status of board {board}")
        priority = _ref(body, "priority")
        if priority is not None and priority not in self.priorities:
            return _invalid("priority", f"priority {priority} not found")
        ticket_id = next(self._ids)
        identifier = next(k for k, v in self.companies.items() if v == company_id)
        stored = {k: v for k, v in body.items() if not k.startswith("initial")}
        stored |= {
            "id": ticket_id,
            "company": {"id": company_id, "identifier": identifier},
            "board": {"id": board},
        }
        self.tickets[ticket_id] = stored
        self.notes[ticket_id] = []
        if body.get("initialDescription"):  # becomes the ticket's first note
            self._add_note(
                ticket_id, {"text": body["initialDescription"], "detailDescriptionFlag": True}
            )
        return Reply.json(201, stored)

    def _note(self, r: Request, ticket: int) -> Reply:
        body, bad = _object(r)
        if bad:
            return bad
        unknown = sorted(set(body) - NOTE_FIELDS)
        if unknown:
            return _invalid(unknown[0], "is not a field of ServiceNote")
        if not isinstance(body.get("text"), str) or not body["text"].strip():
            return _invalid("text", "is required")
        # The published model leaves it open whether a note with no flag is accepted; the
        # Manage screens file every note under one of these, so the stand-in asks for one.
        if not any(
            body.get(f) is True
            for f in ("detailDescriptionFlag", "internalAnalysisFlag", "resolutionFlag")
        ):
            return _invalid(
                "detailDescriptionFlag", "one of detailDescription, internalAnalysis or resolution"
            )
        return Reply.json(201, self._add_note(ticket, body))

    def _add_note(self, ticket: int, body: dict) -> dict:
        note = {"id": next(self._note_ids), "ticketId": ticket, **body}
        self.notes[ticket].append(note)
        return note

    def _query(self, r: Request, items: list[dict]) -> Reply:
        conditions = (r.query.get("conditions") or [""])[0]
        try:
            tests = _parse_conditions(conditions)
        except ValueError as exc:
            return _error(400, "InvalidObject", f"conditions: {exc}")
        found = [item for item in items if all(test(item) for test in tests)]
        order = (r.query.get("orderBy") or ["id asc"])[0].split()
        found.sort(key=lambda item: item.get(order[0], 0), reverse=order[-1].lower() == "desc")
        size = int((r.query.get("pageSize") or ["25"])[0])
        if not 1 <= size <= 1000:
            return _error(400, "InvalidObject", "pageSize is 1 to 1000")
        fields = (r.query.get("fields") or [""])[0]
        if fields:
            keep = fields.split(",")
            found = [{k: v for k, v in item.items() if k in keep} for item in found]
        return Reply.json(200, found[:size])


def _parse_conditions(text: str) -> list:
    tests, pos = [], 0
    while pos < len(text):
        m = _CONDITION.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot read {text[pos:]!r}")
        raw = m["value"]
        if raw.startswith('"'):
            value: object = re.sub(r"\\(.)", r"\1", raw[1:-1])
        elif raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            value = int(raw)
        path, negate = m["field"].split("/"), m["op"] == "!="

        def test(item, path=path, value=value, negate=negate):
            for part in path:
                item = item.get(part) if isinstance(item, dict) else None
            return (item == value) != negate

        tests.append(test)
        pos = m.end()
        if not m["join"] and pos < len(text):
            raise ValueError(f"expected 'and' before {text[pos:]!r}")
    return tests


def _object(r: Request) -> tuple[dict, Reply | None]:
    try:
        body = r.json()
    except ValueError:
        return {}, _error(400, "InvalidObject", "the body is not JSON")
    if not isinstance(body, dict):
        return {}, _error(400, "InvalidObject", "the body is not an object")
    return body, None


def _ref(body: dict, name: str) -> int | None:
    value = body.get(name)
    return value.get("id") if isinstance(value, dict) else None


def _error(code: int, kind: str, message: str) -> Reply:
    return Reply.json(code, {"code": kind, "message": message})


def _invalid(field_name: str, message: str) -> Reply:
    return Reply.json(
        400,
        {
            "code": "InvalidObject",
            "message": "ticket object is invalid",
            "errors": [
                {"code": "InvalidField", "field": field_name, "message": f"{field_name} {message}"}
            ],
        },
    )
