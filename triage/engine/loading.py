"""The rules a command decides with: the configuration's rule files and the contacts of
the database it names.

`--db PATH` means the same database for every command, contacts included, so the
directory is read from that database, not the configured one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from triage.config import Config
from triage.core.pipeline import Rules
from triage.store import contacts as contacts_store


def rules_for(config: Config, db: Path | None = None) -> Rules:
    """Rules with the contacts stored in `db` (the configured database when None; none
    while it does not exist). Raises the TriageError of the first unusable file."""
    where = config if db is None else replace(config, db=db, database=None)
    return Rules.load(config, contacts_store.load_for(where))
