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
import socket
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
from triage.errors import TriageError
from triage.store.desk import fts

TEMPLATES = Path(__file__).resolve().parent / "templates"
SETTINGS = {
    "default_page_size": 100,
    "sql_time_limit_ms": 3000,  # a costly search stops; the daemon's writes never wait on it
    "allow_download": False,  # the page shows rows; the file itself stays on the server
    "suggest_facets": False,
    "allow_csv_stream": False,
}


FIX_DB = "pass the daemon's database (--db, or [store] db in --config)"


class WebError(TriageError, ValueError):
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
    if not base_url.startswith("/") or not base_url.endswith("/"):
        raise WebError("--base-url", f"{base_url!r} must start and end with /", "e.g. /desk/")
    try:
        search = fts.present(db)
    except FileNotFoundError:
        raise WebError(db, "no database here", FIX_DB) from None
    except PermissionError as exc:
        raise WebError(str(exc)) from None  # says why and what to do (store/desk/readonly.py)
    except (OSError, sqlite3.Error) as exc:
        raise WebError(db, f"cannot be read: {exc}", FIX_DB) from None
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

    The address is bound before anything is served, so one in use is a WebError naming it
    (not a log line from the server). `on_ready(url)` is called with the queue's address once
    it is bound (the command prints it).
    """
    import uvicorn

    ds = app(db, policies, threshold, timezone, prefix, base_url)
    sock = bind(listen)
    host = f"[{listen.host}]" if ":" in listen.host else listen.host
    config = uvicorn.Config(
        ds.app(),
        log_level="warning",
        access_log=False,
        proxy_headers=True,  # X-Forwarded-Proto from the reverse proxy (loopback only)
        forwarded_allow_ips="127.0.0.1",
    )
    if on_ready is not None:
        on_ready(f"http://{host}:{sock.getsockname()[1]}{base_url}{pages.DB}/queue")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def bind(listen: Listen) -> socket.socket:
    """A listening socket on `listen`; WebError naming the address when it cannot be had."""
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((listen.host, listen.port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise WebError(
            f"--listen {listen}",
            f"cannot listen there: {exc.strerror or exc}",
            "choose a free port or an address of this host (another `triage web` may run there)",
        ) from None
    sock.set_inheritable(True)
    return sock
