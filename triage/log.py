"""structlog configured once: JSON lines to stderr for machines, readable for people.

stdout belongs to command output (`replay --json`); logs never go there. A
failure's traceback is kept in the JSON line as data (structlog's dict
tracebacks). When stderr is the journal ($JOURNAL_STREAM names it), each line
starts with its syslog priority (`<3>` for an error), which journald reads
(SyslogLevelPrefix=, on by default) and strips: `journalctl -p err` then finds
the failures.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

_configured = False

# sd-daemon(3) / syslog(3) priorities, by the method that logged the line
_PRIORITY = {
    "debug": 7,
    "info": 6,
    "msg": 6,
    "warning": 4,
    "warn": 4,
    "error": 3,
    "exception": 3,
    "critical": 2,
    "fatal": 2,
}


def stderr_is_journal() -> bool:
    """True when $JOURNAL_STREAM names the device and inode of our stderr (systemd.exec(5))."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in stream.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):  # unset, malformed, or no real stderr
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


# Tracebacks as data, without the frames' local variables: those hold what the code was
# handling (a password on its way to the server, a customer's message), never for a log.
_TRACEBACKS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)


def _syslog_prefix(_logger: object, method: str, line: str) -> str:
    return f"<{_PRIORITY.get(method, 6)}>{line}"


def setup(level: str = "info", json: bool | None = None) -> None:
    """Configure structlog; JSON unless stderr is a terminal (or `json` says otherwise)."""
    global _configured
    as_json = (not sys.stderr.isatty()) if json is None else json
    processors: list = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if as_json:
        processors += [_TRACEBACKS, structlog.processors.JSONRenderer()]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
    if stderr_is_journal():
        processors.append(_syslog_prefix)
    structlog.configure(
        processors=processors,
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
