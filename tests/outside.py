"""Where this machine keeps the data written by others that this repository may not hold.

Real messages and real winmail.dat files taken from other projects' test suites are listed
in manifests here (source, commit, path, licence, git blob id) and kept beside the checkout:
the labelled set, in `$TRIAGE_LABELLED`, then `../shared/labelled`, then `../labelled`. Each
part of it is a folder there (`human/`, `bounce/` ... the labels; `tnef/` for winmail.dat).
The tests and `bench/signals.py` find it here, and skip or stop (saying why) when it is absent.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHERE = "$TRIAGE_LABELLED, ../shared/labelled or ../labelled beside this checkout"


def labelled(part: str = "human", explicit: Path | None = None) -> Path | None:
    """The first place (`explicit`, then the usual three) holding the folder `part`, or None."""
    candidates = [explicit] if explicit else []
    if os.environ.get("TRIAGE_LABELLED"):
        candidates.append(Path(os.environ["TRIAGE_LABELLED"]))
    candidates += [ROOT.parent / "shared" / "labelled", ROOT.parent / "labelled"]
    for folder in candidates:
        if folder is not None and (folder / part).is_dir():
            return folder
    return None


def git_blob(data: bytes) -> str:
    """The id git gives these bytes: a manifest's proof that a file was never edited."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
