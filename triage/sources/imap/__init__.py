"""One IMAP mailbox over aioimaplib: TLS, UID bookkeeping, IDLE with a polling fallback.

Nothing here decides anything about a message. The daemon asks for what is
unprocessed, fetches it with BODY.PEEK[] (so nothing is marked read before it
is stored), and acknowledges each message (move, flag or delete) only after the
commit that holds it. Every command has its own timeout: aioimaplib's can miss.
"""

from triage.sources.imap.connection import ImapError, quote, tls_context
from triage.sources.imap.filing import OUTCOMES
from triage.sources.imap.folders import Selected
from triage.sources.imap.reading import Fetched
from triage.sources.imap.session import ImapSession

__all__ = ["OUTCOMES", "Fetched", "ImapError", "ImapSession", "Selected", "quote", "tls_context"]
