"""Every `triage ...` example in docs/cli.md's code blocks runs, in order, on the demo database.

The demo is what `make demo` builds (the contacts imported, fixtures/emails replayed with the
demo configuration at the Makefile's NOW) in a fresh folder holding a copy of fixtures/. Each
line must exit 0, or for `status` and `sla check` one of the monitoring-plugin codes the page
documents (0 to 2); `run` and `web` serve until stopped and are skipped by name (their own
tests start them). Every command of the CLI must have at least one example here.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tests.conftest import ROOT
from triage.cli import cli

PAGE = ROOT / "docs" / "cli.md"
NOW = "2026-03-10T14:30:00Z"  # the Makefile's NOW
UNTIL_STOPPED = {"run", "web"}
MONITORING = {"status", "sla check"}  # exit 0 OK, 1 WARNING, 2 CRITICAL
NEEDS_A_FAILED_ROW = {"errors retry", "outbox retry"}  # the demo has none; the page says so
_BLOCK = re.compile(r"^```[a-z]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[bool, list[str]]]:
    """Each code block's `triage ...` lines, in order, and whether it is a transcript: one
    with `$ ` prompts starts from an empty database (its prompt dropped), the others run on
    the demo database."""
    out = []
    for block in _BLOCK.findall(PAGE.read_text(encoding="utf-8")):
        transcript = any(line.startswith("$ ") for line in block.splitlines())
        lines = [line.removeprefix("$ ").strip() for line in block.splitlines()]
        lines = [line for line in lines if line.startswith("triage ")]
        if lines:
            out.append((transcript, lines))
    return out


def refusals() -> dict[str, str]:
    """Transcript lines the page shows refused: the command, and the `Error:` line it prints."""
    out = {}
    for block in _BLOCK.findall(PAGE.read_text(encoding="utf-8")):
        shown = block.splitlines()
        for line, after in zip(shown, shown[1:] + [""], strict=True):
            if line.startswith("$ triage ") and after.startswith("Error: "):
                out[line.removeprefix("$ ").strip()] = after
    return out


def examples() -> list[str]:
    return [line for _transcript, lines in blocks() for line in lines]


def command_of(words: list[str]) -> str:
    """The command's name: "review release" for `triage review release 39 ...`."""
    group: click.Command = cli
    names = []
    for word in words:
        if not isinstance(group, click.Group) or word not in group.commands:
            break
        group = group.commands[word]
        names.append(word)
    return " ".join(names)


def every_command(group: click.Group = cli, prefix: str = "") -> set[str]:
    out = set()
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out |= every_command(cmd, f"{prefix}{name} ")
            if cmd.invoke_without_command:
                out.add(f"{prefix}{name}")
        else:
            out.add(f"{prefix}{name}")
    return out


def _fixtures(home: Path) -> Path:
    shutil.copytree(ROOT / "fixtures", home / "fixtures")
    for secret in (home / "fixtures" / "demo").iterdir():
        if secret.suffix in (".secret", ".url"):
            secret.chmod(0o600)  # as `triage check` wants; git keeps 0644
    return home


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    home = _fixtures(tmp_path / "demo")
    runner = CliRunner()
    with _inside(home):
        for args in (
            ["contacts", "import", "--db", "triage.db", "fixtures/contacts.csv"],
            ["replay", "--config", "fixtures/demo/triage.toml", "--db", "triage.db"]
            + ["--now", NOW, "fixtures/emails"],
        ):
            done = runner.invoke(cli, args)
            assert done.exit_code == 0, done.output
    return home


class _inside:
    def __init__(self, folder: Path) -> None:
        self.folder, self.was = folder, Path.cwd()

    def __enter__(self) -> None:
        import os

        os.chdir(self.folder)

    def __exit__(self, *exc: object) -> None:
        import os

        os.chdir(self.was)


def test_every_command_has_an_example_on_the_page():
    shown = {command_of(shlex.split(line, comments=True)[1:]) for line in examples()}
    missing = sorted(every_command() - shown - NEEDS_A_FAILED_ROW)
    assert not missing, f"docs/cli.md has no example in a code block for: {missing}"


def _run(folder: Path, lines: list[str]) -> list[str]:
    ran = []
    runner = CliRunner(env={"COLUMNS": "200", "TRIAGE_CONFIG": None})
    refused = refusals()
    with _inside(folder):
        for line in lines:
            words = shlex.split(line, comments=True)[1:]
            name = command_of(words)
            if name in UNTIL_STOPPED:
                continue
            done = runner.invoke(cli, ["--log-level", "warning", *words])
            allowed = (0, 1, 2) if name in MONITORING else (0,)
            if line in refused:  # the page shows it refused: it must be, with that error
                allowed = (1,)
                assert refused[line] in done.output, f"{line}\n-> {done.output}"
            assert done.exit_code in allowed, f"{line}\n-> exit {done.exit_code}\n{done.output}"
            assert done.exception is None or isinstance(done.exception, SystemExit), line
            ran.append(name)
    return ran


def test_every_example_on_the_page_runs_on_the_demo_database(demo: Path, tmp_path: Path):
    ran = []
    for n, (transcript, lines) in enumerate(blocks()):
        ran += _run(_fixtures(tmp_path / f"block{n}") if transcript else demo, lines)
    assert len(ran) >= 20
    assert (demo / "report.html").is_file() and (demo / "backup-demo" / "triage.db").is_file()
