"""The technicians' pages as Datasette metadata: canned queries, facets, full-text search.

Pure: values in, a metadata dict out. The queries' SQL is in `triage.store.desk.canned`; it
calls a few functions that `triage.desk.plugin` registers on every connection.
"""

from __future__ import annotations

from triage.store.desk.canned import (
    FILTERED_TODAY,
    QUEUE_PAGE,
    REVIEW,
    SEARCH,
    TICKET,
    at_risk_sql,
    queue_page_sql,
)

DB = "triage"  # the database's name in every URL: /triage/queue, /triage/ticket?number=...


def metadata(threshold: float, search: bool = True, title: str = "triage desk") -> dict:
    """Datasette metadata for the desk; `search`: the full-text index exists (fts.ensure ran)."""
    queries: dict[str, dict] = {
        "queue": {
            "title": "Queue",
            "description": "Open tickets by time left to the first response: breached first,"
            " then the soonest due; answered tickets and those with no target last;"
            f" {QUEUE_PAGE} a page.",
            "sql": queue_page_sql(threshold),
            "hide_sql": True,
        },
        "at-risk": {
            "title": "At risk",
            "description": f"Unanswered tickets, not yet breached, that have used"
            f" {threshold:.0%} or more of their open time on their policy's calendar.",
            "sql": at_risk_sql(threshold),
            "hide_sql": True,
        },
        "filtered-today": {
            "title": "Filtered today",
            "description": "Mail filtered since midnight (the desk's time zone), newest first,"
            " with the rule that filtered it and why.",
            "sql": FILTERED_TODAY,
            "hide_sql": True,
        },
        "review": {
            "title": "Held for review",
            "description": "Mail a weak rule held for a person: release one with the command"
            " shown.",
            "sql": REVIEW,
            "hide_sql": True,
        },
        "ticket": {
            "title": "Ticket",
            "description": "One ticket: its thread and events in order.",
            "sql": TICKET,
            "hide_sql": True,
        },
    }
    if search:
        queries["search"] = {
            "title": "Search",
            "description": "Subjects and bodies of every stored message; each word must appear.",
            "sql": SEARCH,
            "hide_sql": True,
        }
    tables: dict[str, dict] = {
        "tickets": {
            "facets": ["priority", "company", "queue", "status"],
            "sort": "response_due",
            "label_column": "subject",
        },
        "messages": {
            "facets": ["action", "reason"],
            "sort_desc": "id",
            "label_column": "subject",
        },
        "events": {"facets": ["kind"], "sort_desc": "id"},
    }
    if search:
        tables["messages"].update(
            {"fts_table": "messages_fts", "fts_pk": "id", "searchmode": "escaped"}
        )
    return {
        "title": title,
        "description": "Read-only: tickets, their threads and the mail the filters kept out.",
        "databases": {DB: {"queries": queries, "tables": tables}},
    }
