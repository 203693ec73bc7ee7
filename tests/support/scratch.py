"""Private folders for server instances under the system temporary folder.

A server's unprivileged processes (Dovecot's imap as nobody, Cyrus's services as cyrus,
Postfix's as postfix) must traverse every folder above the instance, and Unix socket
paths are limited to 108 bytes; pytest's tmp_path is under a 0700 folder (reset to 0700
at every session start) and long. So an instance lives in a short 0755 folder under the
system temp folder, linked from the caller's folder, marked with the process that made
it; `sweep` removes those whose maker died without cleaning up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.support import procs

MAX_ROOT_LEN = 60  # leaves room for a server's longest socket path below its folder


def world_traversable(path: Path) -> bool:
    for p in (path, *path.parents):
        try:
            if not p.stat().st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def short_tempdir() -> Path:
    """A world-traversable temporary folder with a short path."""
    for cand in (tempfile.gettempdir(), "/tmp", "/var/tmp"):
        p = Path(cand)
        if p.is_dir() and world_traversable(p) and len(str(p)) < MAX_ROOT_LEN - 25:
            return p
    raise RuntimeError("no world-traversable temporary folder with a short path")


def owner_mark() -> str:
    """This process as (pid, start time): who made a folder."""
    return f"{os.getpid()} {procs.starttime(os.getpid()) or 0}"


def private_folder(prefix: str, link_from: Path, running: Callable[[Path], bool]) -> Path:
    """A new 0755 folder `prefix*` under a short temporary folder, marked with this process,
    linked from `link_from` (a symlink of the same name). Folders of the same prefix left by
    a process that died are swept first, unless `running(folder)` says their server runs."""
    shared = short_tempdir()
    sweep(shared, prefix, running)
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=shared))
    os.chmod(root, 0o755)
    (root / "owner").write_text(owner_mark())
    (link_from / root.name).symlink_to(root, target_is_directory=True)
    return root


def sweep(tempdir: Path, prefix: str, running: Callable[[Path], bool]) -> None:
    """Remove `prefix*` folders whose maker is gone and whose server is not running. A
    folder with no owner mark yet is being made, unless it is over ten minutes old."""
    for d in tempdir.glob(prefix + "*"):
        with contextlib.suppress(OSError, ValueError):
            if running(d):
                continue
        try:
            pid, start = (int(x) for x in (d / "owner").read_text().split())
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                if time.time() - d.stat().st_mtime > 600:
                    shutil.rmtree(d, ignore_errors=True)
            continue
        if not procs.alive(pid, start):
            shutil.rmtree(d, ignore_errors=True)
