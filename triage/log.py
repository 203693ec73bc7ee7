"""structlog configured once: JSON lines to stderr for machines, readable for people.

stdout belongs to command output (`replay --json`); logs never go there.
"""

from __future__ import annotations

import logging
import sys

import structlog

_configured = False


def setup(level: str = "info", json: bool | None = None) -> None:
    """Configure structlog; JSON unless stderr is a terminal (or `json` says otherwise)."""
    global _configured
    as_json = (not sys.stderr.isatty()) if json is None else json
    renderer = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    _configured = True


def get(**bound: object) -> structlog.typing.FilteringBoundLogger:
    if not _configured:
        setup()
    return structlog.get_logger().bind(**bound)
