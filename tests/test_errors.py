"""One error hierarchy: every error triage raises on purpose is a TriageError that says where,
what and the fix in one format, and the command line prints it instead of a traceback."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil

import pytest
from click.testing import CliRunner

import triage
from triage.cli import cli
from triage.cli.common import NeedsSQLite
from triage.config.endpoints import SecretError
from triage.core.contact_rows import CsvError
from triage.core.filters import RuleError

# Each kind built by its own constructor, as its raise sites build it.
from triage.core.lifecycle import LifecycleError
from triage.core.limits import MessageError
from triage.core.priority import PriorityError
from triage.core.sla import SlaError
from triage.desk.listen import ListenError
from triage.desk.objectives import ObjectiveError
from triage.desk.web import WebError
from triage.engine.quarantine import RetryError
from triage.engine.review import ReviewError
from triage.errors import ConfigError, InstantError, RecordedError, TriageError
from triage.service.tracking import TrackingError, UnknownTicket
from triage.sinks.smtp import RelayError, RowError
from triage.sinks.values import SinkConfigError
from triage.sinks.webhook import WebhookSecretError
from triage.sources.graph_auth import GraphError
from triage.sources.imap import ImapError
from triage.store.backup import BackupError
from triage.store.dialect import NotPortable
from triage.store.lock import AlreadyRunning, LockError
from triage.store.migrations import SchemaError, SchemaTooNew
from triage.store.postgres import Unreachable
from triage.store.records import StaleFacts

KINDS = [
    ConfigError("triage.toml", "sla.timezone", "'Mars' is not a known time zone", "use UTC"),
    RuleError("rules/filters.toml", 12, "'startswith' is not a test", "use begins_with"),
    PriorityError("priority.toml", "levels.5", "is not a level", "use levels 1 to 4"),
    CsvError("contacts.csv", "file", "is UTF-16", "save it as 'CSV UTF-8'"),
    SlaError("x.toml: [plans] has no plan 'gold'; fix: use one of basic"),
    InstantError("soon", "'soon' is not ISO 8601", "e.g. 2026-03-10T09:30:00Z"),
    RetryError("no message 4; fix: `triage errors` lists the quarantined ones"),
    ReviewError("message 3 was released meanwhile; fix: `triage tickets`"),
    TrackingError("'x' is not a ticket number; fix: write T-000123 or just 123"),
    UnknownTicket("T-000009"),
    LockError("triage.db.lock: cannot open the daemon's lock file; fix: run as the user"),
    AlreadyRunning("triage.db: in use by another `triage run`; fix: stop that one first"),
    MessageError("too-large", "30000000 bytes, over max_bytes"),
    ImapError("auth", "support: LOGIN refused: [AUTHENTICATIONFAILED]"),
    GraphError("auth", "support: AADSTS7000215: Invalid client secret provided"),
    SecretError("environment variable IMAP_PW is not set"),
    RelayError("auth", "535 5.7.8 Authentication credentials invalid"),
    RowError(True, "550 5.1.1 no such user; fix: correct the address, then retry"),
    SinkConfigError("triage.toml", "sink.1.url", "is not https", "write https://..."),
    WebhookSecretError("a signing secret starts with 'whsec_'; fix: write whsec_<base64>"),
    StaleFacts("T-000004 is not the next number; fix: read the facts in the transaction"),
    SchemaError("triage.db", "migration 2 failed: disk I/O error", "free some space"),
    SchemaTooNew("triage.db", "the database is at schema version 9", "run a later release"),
    ListenError("--listen: '8001x' is not a port (1-65535); fix: write HOST:PORT"),
    ObjectiveError("rules/objectives.toml", "cw.percent", "is not a number", "write percent = 70"),
    WebError("--base-url", "'desk/' must start and end with /", "e.g. /desk/"),
    LifecycleError("T-000001", "is closed: it cannot become pending", "move it to open first"),
    BackupError("backup-1", "not empty", "give a new folder for each backup"),
    NeedsSQLite("triage.toml", "`triage web` needs SQLite for now", "use [store] db"),
    NotPortable("store", "'rowid' has no PostgreSQL form", "add a rule to store/dialect.py"),
    Unreachable("postgresql://db/t", "cannot connect: refused", "check [store] url"),
]
# Exceptions defined in triage/ that are signals inside one module, never raised out of it.
INTERNAL = {"triage.core.filter_loader._KeyProblem", "triage.core.tnef.BudgetSpent"}


def _defined_exceptions() -> set[type[BaseException]]:
    found = set()
    for module in pkgutil.walk_packages(triage.__path__, "triage."):
        if module.name.endswith("__main__"):
            continue
        loaded = importlib.import_module(module.name)
        for _name, value in inspect.getmembers(loaded, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.name:
                found.add(value)
    return found


def test_every_exception_triage_defines_is_a_triage_error():
    defined = _defined_exceptions()
    strays = {f"{e.__module__}.{e.__qualname__}" for e in defined if not issubclass(e, TriageError)}
    assert strays == INTERNAL
    kinds = {e for e in defined if issubclass(e, TriageError)}
    assert {type(k) for k in KINDS} | {TriageError, RecordedError} == kinds


@pytest.mark.parametrize("error", KINDS, ids=lambda e: type(e).__name__)
def test_every_kind_prints_where_problem_and_fix_in_one_format(error):
    text = str(error)
    assert text == error.message
    if error.fix:
        separator = "; fix: " if error.one_line else "\n  fix: "
        assert text.endswith(f"{separator}{error.fix}")
        assert text.count("fix:") == 1
    assert ("\n" in text) == (not error.one_line and error.fix is not None)


def test_the_three_parts_and_an_older_sentence_print_the_same():
    parts = TriageError(
        "rules/sla/x.toml", "[plans.standard.P2] 'respond' is missing", 'add respond = "4h"'
    )
    sentence = TriageError(
        "rules/sla/x.toml: [plans.standard.P2] 'respond' is missing; fix: add respond = \"4h\""
    )
    assert (
        str(parts)
        == str(sentence)
        == (
            "rules/sla/x.toml: [plans.standard.P2] 'respond' is missing\n  fix: add respond = \"4h\""
        )
    )
    assert (parts.problem, parts.fix) == (
        "[plans.standard.P2] 'respond' is missing",
        'add respond = "4h"',
    )
    assert TriageError("nothing to fix here").fix is None


def test_a_recorded_error_stays_on_one_line_for_rows_and_status_lines():
    said = "the relay does not offer SMTPUTF8; fix: use a relay that offers it"
    error = RowError(True, said)
    assert str(error) == said and error.said == said


@pytest.mark.parametrize(
    "kind",
    [
        ConfigError,
        RuleError,
        PriorityError,
        CsvError,
        SlaError,
        InstantError,
        RetryError,
        ReviewError,
        TrackingError,
        MessageError,
    ],
)
def test_kinds_that_were_value_errors_still_are(kind):
    assert issubclass(kind, ValueError)  # code outside the CLI catches ValueError


def test_the_lock_and_secret_errors_are_still_runtime_errors():
    assert issubclass(LockError, RuntimeError) and issubclass(SecretError, RuntimeError)


@pytest.mark.parametrize("error", KINDS, ids=lambda e: type(e).__name__)
def test_every_kind_crosses_a_process_boundary_intact(error):
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error) and str(back) == str(error)
    assert back.__dict__ == error.__dict__


def test_the_command_line_prints_an_error_from_deep_inside_in_the_one_format():
    result = CliRunner().invoke(
        cli,
        [
            "sla",
            "due",
            "--policy",
            "connectwise",
            "--priority",
            "P9",
            "--at",
            "2026-03-10T09:00:00Z",
        ],
    )
    assert result.exit_code == 1
    first, second = result.output.strip().splitlines()
    assert first.startswith("Error: ") and "'P9'" in first
    assert second.startswith("  fix: ")


def test_a_bug_is_a_traceback_not_dressed_as_a_users_mistake(monkeypatch):
    """The command line catches TriageError only: a ValueError from a bug is not hidden."""
    from triage.core import sla

    def broken(_folder):
        raise ValueError("a bug")

    monkeypatch.setattr(sla, "load_policies", broken)
    result = CliRunner().invoke(
        cli,
        [
            "sla",
            "due",
            "--policy",
            "connectwise",
            "--priority",
            "P1",
            "--at",
            "2026-03-10T09:00:00Z",
        ],
    )
    assert isinstance(result.exception, ValueError) and "Error: a bug" not in result.output


def test_a_monitor_command_that_cannot_read_its_config_exits_cannot_tell(tmp_path):
    config = tmp_path / "triage.toml"
    config.write_text("[colours]\nx = 1\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["status", "--config", str(config)])
    assert result.exit_code == 3
    assert f"Error: {config}: [colours] is not a known section\n  fix: use one of" in result.output


def test_the_daemon_says_it_is_not_starting_and_why(tmp_path):
    config = tmp_path / "triage.toml"
    config.write_text('[sla]\ntimezone = "Mars/Olympus"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", "--config", str(config)])
    assert result.exit_code == 1
    assert result.output.startswith(
        f"Error: not starting: {config}: [sla.timezone] 'Mars/Olympus' is not a known time zone\n"
        "  fix: use an IANA name"
    )


def test_replay_of_nothing_readable_names_what_it_was_given(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["replay", "--dry-run", str(empty)])
    assert result.exit_code == 1
    assert (
        f"Error: {empty}: nothing could be read" in result.output and "\n  fix: " in result.output
    )
