"""The technicians' page: a read-only Datasette over the database (`triage web`).

Why Datasette: it is a well-kept, read-only-by-design web front end for SQLite (the file is
opened with `mode=ro`), with what a desk needs already built and tested: canned queries with
parameters, facets, FTS5 search, a JSON API for each page, time limits on queries and a
`base_url` for serving under a reverse proxy's path. The desk's own parts are its metadata
(`triage.desk.pages`), a few SQL functions and cell marks (`triage.desk.plugin`), and one
template for the ticket page.

`app` builds the application (tests drive it in-process or over HTTP); `serve` runs it on a
HOST:PORT until interrupted (what `triage web --listen` calls).
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from datasette.app import Datasette
from datasette.database import Database
from datasette.plugins import pm

from triage.core.sla import tracking
from triage.desk import pages, plugin
from triage.desk.listen import Listen
from triage.store.desk import fts

TEMPLATES = Path(__file__).resolve().parent / "templates"
SETTINGS = {
    "default_page_size": 100,
    "sql_time_limit_ms": 3000,  # a costly search stops; the daemon's writes never wait on it
    "allow_download": False,  # the page shows rows; the file itself stays on the server
    "suggest_facets": False,
    "allow_csv_stream": False,
}


class WebError(ValueError):
    """The page cannot start; the message names the file or option and the fix."""


def _register() -> None:
    if not pm.is_registered(plugin):
        pm.register(plugin, name="triage-desk")


def app(
    db: Path,
    policies: Mapping | None = None,
    threshold: float = tracking.THRESHOLD,
    timezone: str = "UTC",
    prefix: str = "T-",
    base_url: str = "/",
    title: str = "triage desk",
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Datasette:
    """The desk's Datasette over `db`, read-only.

    `policies` (name -> Policy, from the rules) make "at risk" mean what `triage sla check`
    means; without them no ticket is at risk. `base_url`: the path a reverse proxy serves the
    page under (e.g. "/desk/"). `clock` is for tests.
    """
    db = Path(db)
    try:
        search = fts.present(db)
    except (OSError, sqlite3.Error) as exc:
        raise WebError(f"{db}: cannot be read: {exc}; fix: pass the daemon's database") from None
    if not base_url.startswith("/") or not base_url.endswith("/"):
        raise WebError(f"base_url {base_url!r} must start and end with /; fix: e.g. /desk/")
    _register()
    ds = Datasette(
        metadata=pages.metadata(threshold, search=search, title=title),
        settings={**SETTINGS, "base_url": base_url},
        template_dir=str(TEMPLATES),
        secret=secrets.token_hex(32),
    )
    plugin.DESKS[ds] = plugin.Desk(dict(policies or {}), threshold, timezone, prefix, clock)
    ds.add_database(Database(ds, path=str(db.resolve()), is_mutable=True), name=pages.DB)
    return ds


def serve(
    db: Path,
    listen: Listen,
    policies: Mapping | None = None,
    threshold: float = tracking.THRESHOLD,
    timezone: str = "UTC",
    prefix: str = "T-",
    base_url: str = "/",
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the page on `listen` until SIGINT or SIGTERM (uvicorn handles both).

    `on_ready(url)` is called with the queue's address before serving (the command prints it).
    """
    import uvicorn

    ds = app(db, policies, threshold, timezone, prefix, base_url)
    host = f"[{listen.host}]" if ":" in listen.host else listen.host
    if on_ready is not None:
        on_ready(f"http://{host}:{listen.port}{base_url}{pages.DB}/queue")
    uvicorn.run(
        ds.app(),
        host=listen.host,
        port=listen.port,
        log_level="warning",
        access_log=False,
        proxy_headers=True,  # X-Forwarded-Proto from the reverse proxy (loopback only)
        forwarded_allow_ips="127.0.0.1",
    )
