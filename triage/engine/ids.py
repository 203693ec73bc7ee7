"""The random parts of what triage sends: drawn here, at the edge, and handed to the renderers.

The core renders acknowledgements, alerts and digests but draws no random number,
so a test can pin these and compare bytes.
"""

from __future__ import annotations

import secrets

from triage.core.replies import AckIds


def ack_ids() -> AckIds:
    """A fresh Message-ID part and MIME boundary for one acknowledgement."""
    return AckIds(secrets.token_hex(8), secrets.token_hex(12))


def token(nbytes: int = 8) -> str:
    """A fresh hex token for the Message-ID of an alert or a digest."""
    return secrets.token_hex(nbytes)
