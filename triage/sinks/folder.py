"""A folder instead of the relay: each acknowledgement written as `<ticket>.eml`.

`triage replay --acks-dir` sends nothing; it writes what the daemon would send, for a
person to read or a test to compare, byte for byte as it would go out.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from triage.store.listings import Acknowledgement


def write(acks: Iterable[Acknowledgement], folder: Path) -> int:
    """Write each acknowledgement to `folder` (created when missing); returns how many."""
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for ack in acks:
        (folder / f"{ack.ticket}.eml").write_text(ack.raw, encoding="utf-8")
        written += 1
    return written
