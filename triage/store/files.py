"""The content-addressed attachment store beside the database; a message that may become a
ticket or an append keeps its own bytes there too (under the SHA-256 of the message).

A file's name is the SHA-256 of its bytes, so no name a sender chooses ever
reaches the file system, and writing the same attachment twice is a no-op.
Writing before the database commit is safe for the same reason: at worst a
crash leaves an unreferenced file, never a reference to a missing one.
"""

from __future__ import annotations

import os
from pathlib import Path

from triage.core.message import Email
from triage.core.values import replaced
from triage.store.modes import Modes


def path_for(root: Path, sha256: str) -> Path:
    return root / sha256[:2] / sha256


_made: set[Path] = set()  # fan-out folders known to exist (creating files is costly enough)
_modes: dict[Path, Modes] = {}  # per store: what it is made with (its folder's, store/modes.py)


def save(root: Path, sha256: str, data: bytes) -> Path:
    """Write `data` under its hash (owner-only, or the group's too: store/modes.py),
    atomically; skip when present."""
    target = path_for(root, sha256)
    if target.exists():
        return target
    modes = _modes.get(root) or _modes.setdefault(root, Modes.beside(root))
    if target.parent not in _made:
        modes.mkdir(target.parent)
        _made.add(target.parent)
    tmp = target.with_name(f".{sha256}.{os.getpid()}.tmp")
    fd = modes.create(tmp, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, target)
    return target


def read(root: Path | None, sha256: str) -> bytes | None:
    """The bytes saved under `sha256` (a message's or an attachment's), or None."""
    if root is None or not sha256 or not all(c in "0123456789abcdef" for c in sha256):
        return None
    try:
        return path_for(root, sha256).read_bytes()
    except OSError:
        return None


def store_all(root: Path | None, email: Email) -> Email:
    """Save every attachment of `email` and return it without the bytes (cheap to pass on)."""
    if not email.attachments:
        return email
    if root is not None:
        for a in email.attachments:
            save(root, a.sha256, a.data)
    return replaced(email, attachments=tuple(replaced(a, data=b"") for a in email.attachments))
