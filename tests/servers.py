"""The real servers and helpers of tests/support/, under the one name older tests import.

    from . import servers
    with servers.Dovecot.start(tmp) as dc:
        servers.append(dc, "support", "INBOX", raw)

Nothing is defined here: each name lives in its module under tests/support/ (dovecot,
imap, smtp_sink, oauth, certs, net, procs, daemon), which new code imports directly.
"""

from __future__ import annotations

from tests.support.certs import client_ssl_context, make_cert
from tests.support.daemon import log_events, run_daemon
from tests.support.dovecot import Dovecot, skip_reason
from tests.support.imap import (
    append,
    connect,
    count,
    create,
    fetch_all,
    flags,
    folders,
    ok,
    quote,
    reset_uidvalidity,
    session,
    uids,
    uidvalidity,
)
from tests.support.net import HOST, free_port, wait_for_port
from tests.support.oauth import Introspection, oauthbearer_payload, xoauth2_payload
from tests.support.procs import proc_fields
from tests.support.smtp_sink import SmtpSink
from tests.support.smtp_sink import skip_reason as smtp_skip_reason

__all__ = [
    "HOST",
    "Dovecot",
    "Introspection",
    "SmtpSink",
    "append",
    "client_ssl_context",
    "connect",
    "count",
    "create",
    "fetch_all",
    "flags",
    "folders",
    "free_port",
    "log_events",
    "make_cert",
    "oauthbearer_payload",
    "ok",
    "proc_fields",
    "quote",
    "reset_uidvalidity",
    "run_daemon",
    "session",
    "skip_reason",
    "smtp_skip_reason",
    "uids",
    "uidvalidity",
    "wait_for_port",
    "xoauth2_payload",
]
