"""The daemon's Prometheus endpoint on `[daemon] metrics_listen` (off when the key is absent).

Started with the daemon, before any mailbox task, and closed when it stops. Each scrape reads
the database afresh through its own read-only connection (triage.desk.metrics), never the
daemon's, so a scrape shows what is committed and never holds the write lock. An address that
cannot be bound stops the start, naming the key and the fix: a daemon that runs but cannot be
monitored would look healthy to nobody.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from triage.config import Config
from triage.core import sla as sla_mod
from triage.errors import TriageError

if TYPE_CHECKING:  # prometheus-client is imported only when the key is set
    from triage.desk import metrics


def start(config: Config, logger, live: metrics.Live | None = None) -> metrics.Server | None:
    """Serve the metrics on `[daemon] metrics_listen`; None when the key is not set.

    `live`: what the daemon feeds as it works (ingest latency, OAuth tokens' expiry)."""
    listen = config.daemon.metrics_listen
    if listen is None:
        return None
    from triage.desk import metrics

    policies = sla_mod.load_policies(config.sla_dir)
    try:
        server = metrics.serve(listen, config.db, live=live, policies=policies)
    except OSError as exc:
        raise TriageError(
            f"{config.path}: [daemon] metrics_listen",
            f"cannot listen on {listen}: {exc.strerror or exc}",
            "choose a free port (another triage may serve there), or remove the key",
        ) from None
    logger.info("metrics_serving", url=server.url)
    return server
