"""The standard build (sdist, then the wheel from the sdist) installs a triage that runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from .conftest import FIXTURES, ROOT

pytestmark = pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import build"], capture_output=True).returncode != 0,
    reason="the `build` package is missing: pip install -e '.[test]'",
)


def run(*args: str | Path, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(sdist, wheel): `python -m build` as a release does it, the wheel made from the sdist.
    Without isolation: the build requirements are the test extras, no download."""
    out = tmp_path_factory.mktemp("dist")
    # A clean copy, as a fresh clone has it: an egg-info left by an earlier build lists
    # files that setuptools would then put in the sdist whatever MANIFEST.in says.
    source = tmp_path_factory.mktemp("source") / "triage"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*LEFTOVERS))
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source, cwd=out)
    (sdist,) = out.glob("triage-*.tar.gz")
    (wheel,) = out.glob("triage-*.whl")
    return sdist, wheel


LEFTOVERS = (
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "triage.db*",
    "demo-acks",
)


def shipped_rules() -> list[str]:
    return sorted(
        str(p.relative_to(ROOT / "rules")) for p in (ROOT / "rules").rglob("*") if p.is_file()
    )


def test_the_sdist_carries_the_rules_and_templates(built):
    sdist, _wheel = built
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    missing = [r for r in shipped_rules() if f"rules/{r}" not in names]
    assert not missing
    assert "rules/templates/ack.txt" in names and "rules/templates/held.txt" in names


def test_the_wheel_built_from_the_sdist_carries_them(built):
    _sdist, wheel = built
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [r for r in shipped_rules() if f"triage/rules/{r}" not in names]
    assert not missing


def test_the_wheel_installed_in_a_fresh_venv_replays_a_fixture(built, tmp_path):
    """Installed with --no-deps into a venv that sees only the dependencies (this venv's
    site-packages, without its editable triage), and run away from the checkout."""
    _sdist, wheel = built
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "-q",
        "--no-deps",
        wheel,
        cwd=tmp_path,
    )
    site = Path(
        run(
            python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path
        ).stdout.strip()
    )
    # a plain path line: the .pth files there (the editable triage's among them) are not run
    (site / "zz-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRIAGE_CONFIG")}
    where = run(
        python,
        "-c",
        "import triage.config as c; print(c.__file__, c.shipped_rules())",
        cwd=tmp_path,
        env=env,
    )
    module, rules = where.stdout.split()
    assert module.startswith(str(site)) and rules == str(site / "triage" / "rules")
    fixture = FIXTURES / "01-plain-text-request.eml"
    done = run(
        venv / "bin" / "triage",
        "replay",
        "--dry-run",
        "--json",
        "--now",
        "2026-03-10T14:30:00Z",
        fixture,
        cwd=tmp_path,
        env=env,
    )
    (line,) = done.stdout.splitlines()
    assert json.loads(line)["action"] == "ticket"
    version = run(venv / "bin" / "triage", "--version", cwd=tmp_path, env=env).stdout.strip()
    assert version == "triage 0.1.0"
    assert (
        run(venv / "bin" / "triage", "check", cwd=tmp_path, env=env).stdout.strip().endswith("ok")
    )
