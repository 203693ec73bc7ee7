"""Datasette hooks for the desk: SQL functions, read-only connections, marks and links.

Registered once per process by `triage.desk.web.app`. What differs between two desks in one
process (the clock, policies, time zone) is looked up per Datasette instance in `DESKS`.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from datasette import hookimpl
from markupsafe import Markup, escape

from triage.core import sla as sla_mod
from triage.core.sla import tracking
from triage.desk.pages import DB
from triage.store.desk import canned, fts
from triage.store.desk.readonly import refuse_writes

TICKET_TEMPLATE = f"query-{DB}-ticket.html"
QUEUE_TEMPLATE = f"query-{DB}-queue.html"
LAST_PAGE = 1_000_000  # `?page=` above this is no page (its offset would overflow SQLite's)


@dataclass(frozen=True)
class Desk:
    """One desk's settings: what the SQL functions and the ticket page need."""

    policies: Mapping[str, sla_mod.Policy] = field(default_factory=dict)
    threshold: float = tracking.THRESHOLD
    timezone: str = "UTC"
    prefix: str = "T-"
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


DESKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _desk(datasette) -> Desk:
    return DESKS.get(datasette) or Desk()


# --------------------------------------------------------------------------- SQL functions


def left_text(seconds: float) -> str:
    """Seconds left -> `2h 05m`, `3d 4h`; past due -> `overdue 1h 15m`."""
    late = seconds < 0
    minutes = int(abs(seconds) // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    text = f"{days}d {hours}h" if days else f"{hours}h {mins:02d}m"
    return f"overdue {text}" if late else text


def used(desk: Desk, policy, plan, priority, created, timezone) -> float | None:
    """Share of the allowed open time used now (the policy's calendar), None when unknown."""
    if not (policy and priority and created) or policy not in desk.policies:
        return None
    try:
        p = desk.policies[policy]
        start = tracking.instant(created)
        return sla_mod.progress(
            p, plan, p.rank_of(priority), start, desk.clock(), timezone or "UTC"
        )
    except (ValueError, KeyError):
        return None  # a policy or label no longer known: neither at risk nor safe


def functions(desk: Desk) -> dict[str, tuple[int, Callable]]:
    """name -> (arity, function) registered on every connection of the desk."""

    def now() -> str:
        return tracking.iso(desk.clock())

    def day_start() -> str:
        zone = ZoneInfo(desk.timezone)
        today = desk.clock().astimezone(zone).date()
        return tracking.iso(datetime.combine(today, time(0), zone))

    def left(due: str | None) -> str | None:
        when = tracking.instant(due) if due else None
        return None if when is None else left_text((when - desk.clock()).total_seconds())

    def ticket(text: str | None) -> str | None:
        try:
            return tracking.ticket_number_from(text or "", desk.prefix)
        except ValueError:
            return None

    return {
        "desk_now": (0, now),
        "desk_day_start": (0, day_start),
        "desk_left": (1, left),
        "desk_used": (5, lambda *a: used(desk, *a)),
        "desk_ticket": (1, ticket),
        # An empty search matches nothing (an empty phrase) instead of failing.
        "desk_match": (1, lambda q: fts.query_text(q or "") or '""'),
    }


@hookimpl
def prepare_connection(conn, database, datasette):
    if datasette not in DESKS:
        return
    if database == DB:
        # Read-only twice over: Datasette opens the file with mode=ro, and no statement
        # that writes runs on any connection to it (Datasette's own _internal stays writable).
        refuse_writes(conn)
    for name, (arity, fn) in functions(_desk(datasette)).items():
        conn.create_function(name, arity, fn)


# --------------------------------------------------------------------------- queue pages


def page_number(text: str | None) -> int | None:
    """`?page=N` -> N (1 and up), None when absent or not a page number."""
    try:
        number = int(text or "")
    except ValueError:
        return None
    return number if 1 <= number <= LAST_PAGE else None


def paging(key: str, request) -> int:
    """The queue's magic parameters `:_desk_limit` and `:_desk_offset` (canned.queue_page_sql).

    The page shows `canned.QUEUE_PAGE` tickets, the first page unless `?page=N`; its JSON
    twin (`queue.json`) gives every row as it always did unless `?page=N` is asked for.
    """
    page = page_number(request.args.get("page"))
    if page is None and request.url_vars.get("format"):
        every = {"limit": -1, "offset": 0}
        return every[key]  # KeyError for another name: Datasette then reads it from the URL
    first = ((page or 1) - 1) * canned.QUEUE_PAGE
    return {"limit": canned.QUEUE_PAGE, "offset": first}[key]


@hookimpl
def register_magic_parameters(datasette):
    return [("desk", paging)]


def pager(page: int, total: int, url: Callable[[int], str]) -> dict:
    """What the queue's page says above and below its rows: which tickets of how many, and
    the links to the pages before and after (`url(n)` is page n's address)."""
    size = canned.QUEUE_PAGE
    first = (page - 1) * size + 1
    last = min(page * size, total)
    return {
        "page": page,
        "size": size,
        "first": first,
        "last": last,
        "total": total,
        "previous": url(min(page - 1, -(-total // size))) if page > 1 and total else None,
        "next": url(page + 1) if last < total else None,
    }


# --------------------------------------------------------------------------- cells


_MARKS = {
    "BREACHED": ("desk-breached", "color:#b00020;font-weight:bold", "⚠ BREACHED"),
    "at risk": ("desk-at-risk", "color:#b26a00;font-weight:bold", "at risk"),
}


@hookimpl
def render_cell(value, column, table, database, datasette):
    if datasette not in DESKS or database != DB:
        return None
    if column == "state" and value in _MARKS:
        css, style, text = _MARKS[value]
        return Markup(f'<span class="{css}" style="{style}">{escape(text)}</span>')
    linked = (column == "ticket" and table is None) or (column == "number" and table == "tickets")
    if linked and value:
        url = datasette.urls.database(DB) + "/ticket?number=" + str(escape(value))
        return Markup(f'<a class="desk-ticket" href="{url}">{escape(value)}</a>')
    return None


# --------------------------------------------------------------------------- ticket page


@hookimpl
def extra_template_vars(template, database, request, datasette):
    if datasette not in DESKS or request is None:
        return {}
    if template == QUEUE_TEMPLATE:
        return _queue_vars(request, datasette)
    if template != TICKET_TEMPLATE:
        return {}
    desk = _desk(datasette)

    async def ticket_vars():
        number = request.args.get("number") or ""
        db = datasette.get_database(DB)
        ticket = await canned.ticket_head(db, desk.threshold, number)
        if ticket is None:
            return {"desk_ticket": None, "desk_number": number}
        decision = await canned.decision_of(db, ticket["message_key"])
        try:
            why = json.loads(decision or "{}").get("reasons", [])
        except ValueError:
            why = []
        ticket["why"] = [str(w) for w in why]
        return {"desk_ticket": ticket, "desk_number": number}

    return ticket_vars


def _queue_vars(request, datasette):
    async def queue_vars():
        total = await canned.open_count(datasette.get_database(DB))
        queue = datasette.urls.database(DB) + "/queue"
        page = page_number(request.args.get("page")) or 1
        return {"desk_pages": pager(page, total, lambda n: f"{queue}?page={n}")}

    return queue_vars
