"""Logs: JSON lines with the traceback kept, and the level where journald can read it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from triage.cli import cli

from .conftest import ROOT

PROGRAM = """
from triage import log
log.setup("debug", json=True)
logger = log.get(component="test")
logger.info("started")
logger.warning("odd")
def login(password):
    {}["missing"]
try:
    login("hunter2-secret")
except KeyError:
    logger.exception("message_store_failed", source="m1")
logger.error("mailbox_failing")
"""


def run(tmp_path: Path, journal: str | None = None) -> list[str]:
    """PROGRAM with stderr in a file; JOURNAL_STREAM set to that file's device:inode when
    `journal` is "same", to another file's when "other"."""
    err = tmp_path / "stderr"
    err.touch()
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    if journal is not None:
        target = err if journal == "same" else tmp_path
        st = target.stat()
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    with err.open("wb") as fh:
        subprocess.run(
            [sys.executable, "-c", PROGRAM],
            cwd=ROOT,
            env={**env, "PYTHONPATH": str(ROOT)},
            stderr=fh,
            check=True,
            timeout=60,
        )
    return err.read_text(encoding="utf-8").splitlines()


def test_json_logs_keep_the_traceback_as_data(tmp_path):
    lines = [json.loads(line) for line in run(tmp_path)]
    failed = next(x for x in lines if x["event"] == "message_store_failed")
    assert "exc_info" not in failed
    (exception,) = failed["exception"]
    assert exception["exc_type"] == "KeyError" and exception["exc_value"] == "'missing'"
    assert exception["frames"][-1]["name"] == "login"
    assert failed["level"] == "error" and failed["source"] == "m1"


def test_when_stderr_is_the_journal_each_line_carries_its_syslog_priority(tmp_path):
    lines = run(tmp_path, journal="same")
    assert [line[:3] for line in lines] == ["<6>", "<4>", "<3>", "<3>"]
    assert json.loads(lines[0][3:])["event"] == "started"  # journald strips the prefix


def test_no_priority_prefix_when_stderr_is_not_the_journal(tmp_path):
    for journal in (None, "other"):
        assert all(line.startswith("{") for line in run(tmp_path, journal))


def test_version():
    from importlib.metadata import version

    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"triage {version('triage')}"


def test_a_traceback_never_carries_the_values_of_local_variables(tmp_path):
    """Frames' locals hold what the code was handling: a password being sent, a customer's
    message. The traceback keeps where it happened, never those values."""
    lines = run(tmp_path)
    failed = next(json.loads(x) for x in lines if "message_store_failed" in x)
    frames = failed["exception"][0]["frames"]
    assert [f["name"] for f in frames][-1] == "login"
    assert "hunter2-secret" not in "\n".join(lines)
    assert all("locals" not in f for f in frames)
