"""Write tests/data/releases/<commit>.db: a database made by each release's own code.

The migration tests open these with today's code. Each database is what a user of that
release has: the demo's contacts imported, fixtures/emails replayed at a fixed clock, one
acknowledgement marked sent by the release's outbox code and one mailbox's UID state written
by its mailbox code. The last release's database also has the columns its daemon adds when
it starts (outbox and mailbox state); the older one was never touched by a daemon, so it
lacks them, as a replay-only database of that release does.

Run from the repository (needs git and a Python with triage's dependencies):

    python tests/data/releases/make.py [--python /path/to/python]
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
NOW = "2026-03-10T14:30:00Z"
# (commit, did a daemon start on it: its columns are added)
RELEASES = (("21db78d", False), ("9e44bdc", True))

# Runs inside the release's tree, with its code: one row marked sent, one mailbox's state.
_AFTER_REPLAY = """
import sys
from datetime import UTC, datetime
try:  # the release before the store package
    from triage.store import Store
    from triage import outbox, mailbox_state as mailboxes
except ImportError:
    from triage.store.sqlite import Store
    from triage.sinks import outbox
    from triage.store import mailboxes
db, daemon = sys.argv[1], sys.argv[2] == "1"
store = Store(db)
if daemon:
    outbox.ensure(store)
    mailboxes.ensure(store)
row = store.conn.execute("SELECT MIN(id) FROM outbox").fetchone()[0]
outbox.mark_sent(store, row, datetime(2026, 3, 10, 14, 31, tzinfo=UTC))
mailboxes.update(store, "INBOX", uidvalidity=1700000000, last_uid=87)
store.close()
"""


def _triage(python: str, tree: Path, *args: str) -> None:
    """The release's command line, run with its code first on the path."""
    code = "import sys; from triage.cli import main; sys.argv[0] = 'triage'; main()"
    subprocess.run(
        [python, "-c", code, "--log-level", "warning", *args],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "HOME": str(tree)},
        check=True,
        stdout=subprocess.DEVNULL,
    )


def make(commit: str, daemon: bool, python: str) -> Path:
    target = HERE / f"{commit}.db"
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), commit],
            check=True,
            capture_output=True,
        )
        try:
            db = Path(tmp) / "triage.db"
            _triage(python, tree, "contacts", "import", "--db", str(db), "fixtures/contacts.csv")
            _triage(python, tree, "replay", "--now", NOW, "--db", str(db), "fixtures/emails")
            subprocess.run(
                [python, "-c", _AFTER_REPLAY, str(db), "1" if daemon else "0"],
                cwd=tree,
                env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                check=True,
            )
            target.unlink(missing_ok=True)
            conn = sqlite3.connect(db)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("VACUUM INTO ?", (str(target),))  # one file, no -wal beside it
            conn.close()
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=True
            )
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="a Python with the dependencies")
    args = parser.parse_args()
    for commit, daemon in RELEASES:
        path = make(commit, daemon, args.python)
        print(f"{path.relative_to(REPO)}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
