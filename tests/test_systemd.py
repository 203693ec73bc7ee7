"""systemd/: the units verify cleanly, carry their hardening, and the example config is sound.

`systemd-analyze` comes from Debian's `systemd` package; when it is missing the tests install
it (as root, with apt-get) or skip saying why. No running systemd is needed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from triage.cli import cli
from triage.config import load_config

from .conftest import ROOT

SYSTEMD = ROOT / "systemd"
SERVICE = SYSTEMD / "triage.service"
SLA_SERVICE = SYSTEMD / "triage-sla-check.service"
SLA_TIMER = SYSTEMD / "triage-sla-check.timer"
EXAMPLE = SYSTEMD / "triage.toml.example"
OPERATIONS = ROOT / "docs" / "operations.md"

# What systemd-analyze prints for a directive it does not know or cannot parse, in the wording
# of several systemd versions ("Unknown key name", "Unknown key 'X' in section [S]", "Unknown
# section", "Unknown lvalue", "Failed to parse ..., ignoring").
PROBLEM = re.compile(r"unknown (key|section|lvalue)|failed to parse|, ignoring", re.IGNORECASE)


# --------------------------------------------------------------------------- unit files


def directives(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) in file order; keys may repeat, as systemd allows."""
    out, section = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a directive: {raw!r}"
        out.append((section, key.strip(), value.strip()))
    return out


def values(path: Path, key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in directives(path) if s == section and k == key]


# Required in both services: (key, value).
HARDENING = [
    ("NoNewPrivileges", "yes"),
    ("PrivateMounts", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallFilter", "~@privileged @resources"),
    ("SystemCallArchitectures", "native"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("ProtectProc", "invisible"),
    ("ProcSubset", "pid"),
    ("RestrictNamespaces", "yes"),
    ("RestrictRealtime", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("LockPersonality", "yes"),
    ("MemoryDenyWriteExecute", "yes"),
    ("CapabilityBoundingSet", ""),
    ("AmbientCapabilities", ""),
    ("UMask", "0077"),
    ("PrivateUsers", "yes"),
    ("RemoveIPC", "yes"),
    ("DevicePolicy", "closed"),
    ("DynamicUser", "yes"),
    ("User", "triage"),
    ("StateDirectory", "triage"),
    ("ConfigurationDirectory", "triage"),
]


@pytest.mark.parametrize("unit", [SERVICE, SLA_SERVICE], ids=lambda p: p.name)
@pytest.mark.parametrize(("key", "value"), HARDENING, ids=[f"{k}={v}" for k, v in HARDENING])
def test_hardening_directive_present(unit, key, value):
    assert value in values(unit, key), f"{unit.name}: missing {key}={value}"


def test_daemon_service():
    one = {k: v for s, k, v in directives(SERVICE) if s == "Service"}
    assert one["Type"] == "notify"
    assert one["ExecStart"] == "/usr/local/bin/triage run --config /etc/triage/triage.toml"
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["WatchdogSec"] == "60"
    assert one["Restart"] == "on-failure"
    assert one["RestartSec"] == "5"
    assert one["TimeoutStopSec"] == "30"
    # SIGTERM to the main process, which stops its workers itself (tests/test_stopping.py)
    assert one["KillMode"] == "mixed"
    assert values(SERVICE, "Environment") == ["PYTHONUNBUFFERED=1"]
    assert values(SERVICE, "RestrictAddressFamilies") == ["AF_INET AF_INET6 AF_UNIX"]
    # it must reach the mail servers
    assert not values(SERVICE, "IPAddressDeny")
    assert not values(SERVICE, "PrivateNetwork")
    assert values(SERVICE, "WantedBy", "Install") == ["multi-user.target"]


def test_daemon_service_credentials():
    creds = dict(v.split(":", 1) for v in values(SERVICE, "LoadCredential"))
    assert creds == {
        "imap-password": "/etc/triage/imap-password",
        "smtp-password": "/etc/triage/smtp-password",
    }


def test_sla_check_pair():
    one = {k: v for s, k, v in directives(SLA_SERVICE) if s == "Service"}
    assert one["Type"] == "oneshot"
    assert one["ExecStart"] == "/usr/local/bin/triage sla check --config /etc/triage/triage.toml"
    # it needs no network at all
    assert one["PrivateNetwork"] == "yes"
    assert values(SLA_SERVICE, "RestrictAddressFamilies") == ["AF_UNIX"]
    timer = {k: v for s, k, v in directives(SLA_TIMER) if s == "Timer"}
    assert timer["OnCalendar"] == "*:0/5"
    assert timer.get("Unit", SLA_SERVICE.name) == SLA_SERVICE.name
    assert SLA_TIMER.stem == SLA_SERVICE.stem
    assert values(SLA_TIMER, "WantedBy", "Install") == ["timers.target"]


@pytest.mark.parametrize("unit", [SERVICE, SLA_SERVICE], ids=lambda p: p.name)
def test_journald_reads_the_level_of_each_log_line(unit):
    """triage prefixes each line with its syslog priority when stderr is the journal."""
    assert values(unit, "SyslogLevelPrefix") == ["yes"]
    assert values(unit, "StandardError") in ([], ["journal"])


def test_sla_check_warning_and_critical_exits_do_not_fail_the_unit():
    """`triage sla check` exits 1 (at risk) and 2 (breached) for monitors; for systemd those
    are results, not failures of the unit (3, cannot tell, still is one)."""
    allowed = " ".join(values(SLA_SERVICE, "SuccessExitStatus")).split()
    assert sorted(allowed) == ["1", "2"]


# --------------------------------------------------------------------------- example config


def test_example_config_parses_and_keeps_the_database_in_the_state_directory():
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert Path(data["store"]["db"]).parent == Path("/var/lib/triage")
    assert values(SERVICE, "StateDirectory") == ["triage"]
    mailbox = data["mailbox"][0]
    assert {"name", "host", "port", "tls", "username", "folder", "after"} <= set(mailbox)
    assert mailbox["tls"] in ("tls", "starttls", "none")
    assert mailbox["after"] in ("move", "flag", "delete")
    assert isinstance(data["daemon"]["message_timeout"], int)
    assert data["smtp"]["tls"] in ("tls", "starttls", "none")


def test_example_config_names_the_credentials_the_unit_loads():
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    loaded = {v.split(":", 1)[0] for v in values(SERVICE, "LoadCredential")}
    named = {m["password_credential"] for m in data["mailbox"]} | {
        data["smtp"]["password_credential"]
    }
    assert named <= loaded


def test_example_config_loads_and_checks():
    """triage.config accepts the whole example, daemon sections included; `triage check` too."""
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    config = load_config(EXAMPLE)
    assert config.db == Path(data["store"]["db"])
    assert config.policy == data["sla"]["policy"]
    assert [m.name for m in config.mailboxes] == [m["name"] for m in data["mailbox"]]
    assert config.smtp is not None and config.smtp.host == data["smtp"]["host"]
    result = CliRunner().invoke(cli, ["check", "--config", str(EXAMPLE)])
    assert result.exit_code == 0, result.output


def test_config_path_agrees_with_the_units():
    for unit in (SERVICE, SLA_SERVICE):
        assert "--config /etc/triage/triage.toml" in values(unit, "ExecStart")[0]
        assert values(unit, "ConfigurationDirectory") == ["triage"]


# --------------------------------------------------------------------------- systemd-analyze


@pytest.fixture(scope="module")
def analyze() -> str:
    """Path of systemd-analyze, installing Debian's systemd package if need be."""
    found = shutil.which("systemd-analyze")
    if found:
        return found
    if not shutil.which("apt-get"):
        pytest.skip("systemd-analyze is missing and there is no apt-get to install `systemd`")
    if os.geteuid() != 0:
        pytest.skip("systemd-analyze is missing; install it with `apt-get install systemd` (root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "systemd"]
    done = subprocess.run(install, env=env, capture_output=True, timeout=900)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=900)
        done = subprocess.run(install, env=env, capture_output=True, timeout=900)
    found = shutil.which("systemd-analyze")
    if not found:
        tail = done.stderr.decode(errors="replace")[-500:]
        pytest.skip(f"could not install the systemd package: {tail}")
    return found


def runnable_triage() -> str:
    """An existing executable to stand in for /usr/local/bin/triage."""
    script = Path(sys.executable).parent / "triage"
    if script.is_file() and os.access(script, os.X_OK):
        return str(script)
    return shutil.which("true") or "/bin/true"


def installable_copy(tmp_path: Path, inject: str = "") -> list[Path]:
    """The three units in tmp_path, ExecStart and credential sources pointing at real files."""
    exe = runnable_triage()
    for name in ("imap-password", "smtp-password"):
        (tmp_path / name).write_text("secret\n", encoding="utf-8")
    out = []
    for unit in (SERVICE, SLA_SERVICE, SLA_TIMER):
        text = unit.read_text(encoding="utf-8").replace("/usr/local/bin/triage", exe)
        text = re.sub(
            r"^LoadCredential=([\w-]+):/etc/triage/",
            lambda m: f"LoadCredential={m.group(1)}:{tmp_path}/",
            text,
            flags=re.MULTILINE,
        )
        if inject and unit == SERVICE:
            text = text.replace("[Service]\n", f"[Service]\n{inject}\n", 1)
        target = tmp_path / unit.name
        target.write_text(text, encoding="utf-8")
        out.append(target)
    return out


def verify(analyze: str, units: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [analyze, "verify", "--man=no", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=units[0].parent,
    )


def test_units_verify_without_warnings(analyze, tmp_path):
    units = installable_copy(tmp_path)
    assert f"LoadCredential=imap-password:{tmp_path}/imap-password" in units[0].read_text()
    done = verify(analyze, units)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    problems = [line for line in output.splitlines() if PROBLEM.search(line)]
    assert not problems, output


def test_verify_output_would_show_an_unknown_directive(analyze, tmp_path):
    """The check above can fail: an unknown key is reported on stderr (exit status 0)."""
    done = verify(analyze, installable_copy(tmp_path, inject="NoSuchDirective=yes"))
    assert any(PROBLEM.search(line) for line in done.stderr.splitlines()), done.stderr


def test_timer_calendar_is_every_five_minutes(analyze):
    done = subprocess.run(
        [analyze, "calendar", "*:0/5"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "*-*-* *:00/5:00" in done.stdout


def security(analyze: str, unit: Path) -> float:
    done = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=unit.parent,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    if match is None:
        pytest.skip(
            f"`systemd-analyze security --offline=yes` does not work here (systemd 252+ "
            f"needed): {done.stderr.strip()[-300:]}"
        )
    return float(match.group(1))


@pytest.mark.parametrize("unit", [SERVICE, SLA_SERVICE], ids=lambda p: p.name)
def test_security_exposure_is_low(analyze, unit):
    score = security(analyze, unit)
    assert score <= 2.0, f"{unit.name}: exposure {score}"


def test_exposure_is_recorded_in_the_runbook(analyze):
    score = security(analyze, SERVICE)
    text = OPERATIONS.read_text(encoding="utf-8")
    assert "Overall exposure level for triage.service:" in text
    recorded = re.findall(r"Overall exposure level for triage\.service: (\d+\.\d+)", text)
    # other systemd versions weigh the settings a little differently
    assert any(abs(float(r) - score) <= 0.5 for r in recorded), (score, recorded)
