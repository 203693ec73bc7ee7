"""The modes the store gives what it creates: its folder's, so the operator decides who reads.

The database, its -wal and -shm (SQLite gives them the database's mode), the attachment
store and the kept messages are owner-only (0600 files, 0700 folders) unless the folder that
holds the database is open to its group (g+rx, as the shipped unit's StateDirectoryMode=0750
makes /var/lib/triage): then the group reads them too (0640, 0750), and technicians in the
`triage` group can use `triage web` and `triage tickets --db` (docs/operations.md, "Who can
read"). Never others, and never by the umask alone: a root shell's umask of 022 would open
customers' mail to every group it writes in.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

GROUP_READS = stat.S_IRGRP | stat.S_IXGRP


@dataclass(frozen=True, slots=True)
class Modes:
    file: int
    folder: int

    @classmethod
    def beside(cls, folder: Path) -> Modes:
        """The modes for what is made in `folder` (owner-only if it cannot be read)."""
        try:
            grouped = stat.S_IMODE(folder.stat().st_mode) & GROUP_READS == GROUP_READS
        except OSError:
            grouped = False
        return cls(0o640, 0o750) if grouped else cls(0o600, 0o700)

    def create(self, path: Path, flags: int) -> int:
        """os.open(path, O_CREAT | flags) with exactly `file` when it is new, whatever the
        umask (the shipped unit's 0077 would take the group's read away again)."""
        fd = os.open(path, os.O_CREAT | flags, self.file)
        made = os.fstat(fd)
        if stat.S_IMODE(made.st_mode) != self.file and made.st_size == 0:
            os.fchmod(fd, self.file)
        return fd

    def mkdir(self, folder: Path) -> None:
        """`folder` and each missing parent made with exactly the `folder` mode."""
        missing = [p for p in (folder, *folder.parents) if not p.is_dir()]
        for level in reversed(missing):
            level.mkdir(mode=self.folder, exist_ok=True)
            setgid = stat.S_IMODE(level.stat().st_mode) & stat.S_ISGID  # the group's, inherited
            os.chmod(level, self.folder | setgid)

    def narrow(self, folder: Path) -> None:
        """No more than `folder` for `folder`: one an earlier release made with the umask alone
        (0755: every local user could list the attachments) is narrowed."""
        mode = stat.S_IMODE(folder.stat().st_mode)
        if mode & 0o777 & ~self.folder:
            os.chmod(folder, mode & (self.folder | stat.S_ISGID))
