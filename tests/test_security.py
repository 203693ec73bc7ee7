"""The security review, one test (or a few) per point; docs/security.md says why each holds.

1. Secrets never reach logs, command output, the database or error messages.
2. Attachment names cannot escape the content-addressed attachment store.
3. SQL only through parameters (a static scan, with an explained allow-list, and a behavioural test).
4. Templates cannot reach object attributes; no str.format on anything a sender wrote.
5. Plain-text IMAP/SMTP is refused unless explicitly allowed.
6. The database and the attachment/quarantine store are owner-only.
7. No acknowledgement goes to a forged sender (DMARC fail), through the real SMTP path.
8. The systemd exposure figure in docs/security.md matches the runbook and this host.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from triage.cli import cli
from triage.config import Config
from triage.config.endpoints import Smtp
from triage.core.pipeline import Rules
from triage.engine.replay import replay
from triage.sinks import outbox
from triage.sources.files import Item
from triage.store import files as attachments
from triage.store.sqlite import Store

from . import servers
from .conftest import ROOT, build, human

NOW = "2026-03-10T14:30:00Z"
NOW_DT = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
DOCS = ROOT / "docs" / "security.md"


def triage(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "triage.cli", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(0o022),  # the usual umask, not systemd's UMask=0077
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"triage {' '.join(args)} exited {proc.returncode}\n{proc.stderr}")
    return proc


# --------------------------------------------------------------------------- 1. secrets


def _forms(secret: str, user: str) -> list[str]:
    """The secret as written, and as it travels (AUTH PLAIN, XOAUTH2, LOGIN in base64)."""
    return [
        secret,
        base64.b64encode(f"\0{user}\0{secret}".encode()).decode(),
        base64.b64encode(f"user={user}\1auth=Bearer {secret}\1\1".encode()).decode(),
        base64.b64encode(secret.encode()).decode(),
    ]


def _leaks(text: str, secrets_: dict[str, list[str]]) -> list[str]:
    return [
        f"{name} ({form[:12]}...)"
        for name, forms in secrets_.items()
        for form in forms
        if form in text
    ]


@pytest.mark.skipif(servers.skip_reason() is not None, reason=servers.skip_reason() or "")
def test_secrets_never_reach_logs_output_database_or_errors(tmp_path, make_smtp_sink):
    """check, replay and run (right password, wrong password, SMTP login, OAuth token),
    at debug level; then every log line, every command's output, and the database's bytes
    are searched for each secret, as written and base64-encoded as it travels."""
    from tests.support.daemon import Daemon, wait_for

    imap_pw = "Imap-" + secrets.token_hex(8)
    wrong_pw = "Wrong-" + secrets.token_hex(8)
    smtp_pw = "Smtp-" + secrets.token_hex(8)
    token = "Tok-" + secrets.token_hex(12)
    found = {
        "imap password": _forms(imap_pw, "support"),
        "wrong password": _forms(wrong_pw, "support"),
        "smtp password": _forms(smtp_pw, "relay"),
        "oauth token": _forms(token, "support"),
    }
    imap = servers.Dovecot.start(tmp_path / "dc", users={"support": imap_pw})
    sink = make_smtp_sink(auth=("relay", smtp_pw))
    try:
        smtp = (
            f'[smtp]\nhost = "127.0.0.1"\nport = {sink.port}\ntls = "none"\nallow_insecure = true\n'
            f'username = "relay"\npassword_env = "TRIAGE_TEST_SMTP_PW"\n'
            '[identity]\nsupport_address = "support@msp.example"\ndomains = ["msp.example"]\n'
        )
        d = Daemon(tmp_path, imap, password=imap_pw, extra=smtp)
        env = {"TRIAGE_TEST_SMTP_PW": smtp_pw}
        outputs: list[str] = []

        def run_daemon(daemon: Daemon, until, what: str) -> None:
            """`triage --log-level debug run` until `until()`, then SIGTERM."""
            daemon.proc = subprocess.Popen(
                [sys.executable, "-m", "triage.cli", "--log-level", "debug", "run"]
                + ["--config", str(daemon.config)],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                stdout=subprocess.PIPE,
                stderr=daemon.log.open("a"),
                text=True,
            )
            try:
                wait_for(until, 40, what)
            finally:
                daemon.proc.send_signal(signal.SIGTERM)
                out, _ = daemon.proc.communicate(timeout=30)
                outputs.append(out)

        # check and replay with the secrets configured
        for args in (
            ["check", "--config", str(d.config)],
            [
                "replay",
                "--config",
                str(d.config),
                "--json",
                "--now",
                NOW,
                str(ROOT / "fixtures" / "emails"),
            ],
        ):
            proc = triage(*args, env=env)
            outputs += [proc.stdout, proc.stderr]

        # run: right passwords, one message in, one acknowledgement out through SMTP AUTH
        servers.append(imap, "support", "INBOX", human(Message_ID="<sec1@x>"))
        run_daemon(d, lambda: len(sink.messages()) == 1, "the acknowledgement over SMTP")
        assert sink.envelopes()[0]["authenticated"]

        # run: the SMTP password is wrong; the relay is failing (with the server's answer)
        env["TRIAGE_TEST_SMTP_PW"] = wrong_pw
        servers.append(imap, "support", "INBOX", human(Message_ID="<sec2@x>", Subject="second"))
        run_daemon(d, lambda: d.logged("relay_failing"), "the failed SMTP login")
        env["TRIAGE_TEST_SMTP_PW"] = smtp_pw

        # run: the IMAP password is wrong; the login error is logged and recorded
        (tmp_path / "pw").write_text(wrong_pw + "\n")
        run_daemon(d, lambda: d.logged("mailbox_failing"), "mailbox_failing (wrong password)")
        failing = d.logged("mailbox_failing")[-1]
        assert failing["kind"] == "auth" and "refused" in failing["error"]

        # run: an OAuth token from a command (this Dovecot offers no XOAUTH2: the login fails)
        script = tmp_path / "token.sh"
        script.write_text(f"#!/bin/sh\nprintf '%s\\n' '{token}'\n")
        script.chmod(0o700)
        (tmp_path / "oauth").mkdir()
        oauth = Daemon(
            tmp_path / "oauth",
            imap,
            mailbox={"password_file": None, "oauth_command": str(script)},
            extra=smtp,
        )
        run_daemon(oauth, lambda: oauth.logged("mailbox_failing"), "mailbox_failing (oauth)")
        # a token command that fails after printing the token: its output is never quoted
        script.write_text(f"#!/bin/sh\nprintf '%s\\n' '{token}'\nexit 3\n")
        run_daemon(
            oauth,
            lambda: any(e.get("kind") == "secret" for e in oauth.logged("mailbox_failing")),
            "the failed token command",
        )
        status = triage("status", "--config", str(d.config), env=env, check=False)
        assert status.returncode == 2  # critical: the mailbox is failing
        outputs += [status.stdout, status.stderr]

        texts = {
            "daemon logs": d.log.read_text() + oauth.log.read_text(),
            "command output": "\n".join(outputs),
            "databases": "\n".join(
                p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*.db*") if p.is_file()
            ),
            "outbox rows": json.dumps(d.query("SELECT last_error FROM outbox")),
            "relay state": json.dumps(d.query("SELECT last_error FROM relay_state")),
        }
        for where, text in texts.items():
            assert not _leaks(text, found), f"{where} holds {_leaks(text, found)}"
        # and the errors said what happened, naming the source but not the secret
        log = texts["daemon logs"]
        assert "refused" in log and f"file:{tmp_path / 'pw'}" in log  # names the source
        assert f"command:{script}" in log
    finally:
        imap.cleanup()


def test_secret_errors_name_the_source_never_the_value(tmp_path, monkeypatch):
    from triage.config.endpoints import Secret, SecretError

    value = "S3cret-" + secrets.token_hex(6)
    script = tmp_path / "tok.sh"
    script.write_text(f"#!/bin/sh\necho '{value}'\necho '{value}' >&2\nexit 2\n")
    script.chmod(0o700)
    monkeypatch.delenv("TRIAGE_NOPE", raising=False)
    for secret in (
        Secret("command", str(script)),
        Secret("env", "TRIAGE_NOPE"),
        Secret("file", str(tmp_path / "missing")),
        Secret("credential", "imap"),
    ):
        with pytest.raises(SecretError) as err:
            secret.reveal()
        assert value not in str(err.value) and secret.value in str(err.value)
        assert value not in str(secret) and value not in repr(secret)
    monkeypatch.setenv("TRIAGE_PW", value)
    assert value not in str(Secret("env", "TRIAGE_PW")) + repr(Secret("env", "TRIAGE_PW"))


def test_a_token_command_is_shown_by_its_program_and_its_output_checked(tmp_path):
    from triage.config.endpoints import Secret, SecretError

    value = "client-secret-" + secrets.token_hex(6)
    script = tmp_path / "tok.sh"
    script.write_text("#!/bin/sh\necho 'good-token'\n")
    script.chmod(0o700)
    secret = Secret("command", f"{script} --client-secret {value}")
    assert secret.reveal() == "good-token"
    assert str(secret) == f"command:{script} ..." and value not in repr(secret)
    # an error message printed with exit status 0 is not taken for a token, nor quoted
    script.write_text("#!/bin/sh\necho 'erreur : jeton expiré'\n")
    with pytest.raises(SecretError, match="not a token") as err:
        secret.reveal()
    assert "jeton" not in str(err.value) and value not in str(err.value)


def test_a_password_in_the_config_file_is_refused(tmp_path):
    config = tmp_path / "triage.toml"
    config.write_text(
        '[[mailbox]]\nname = "s"\nhost = "h"\nusername = "u"\npassword = "hunter2"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["check", "--config", str(config)])
    assert result.exit_code != 0 and "mailbox[0].password" in result.output
    assert "password_file" in result.output and "hunter2" not in result.output


# --------------------------------------------------------------------------- 2. attachment names

HOSTILE_NAMES = [
    ("dotdot", b'filename="../../../../tmp/evil.sh"', "../../../../tmp/evil.sh"),
    ("absolute", b'filename="/etc/cron.d/evil"', "/etc/cron.d/evil"),
    ("backslashes", b'filename="..\\\\..\\\\windows\\\\win.ini"', None),
    ("nul", b'filename="safe.txt\x00.sh"', None),
    ("con", b"filename=CON", "CON"),
    ("nul-device", b'filename="NUL.txt"', "NUL.txt"),
    ("aux", b'filename="aux"', "aux"),
    ("long", b'filename="' + b"a" * 4000 + b'.pdf"', "a" * 4000 + ".pdf"),
    ("rfc2047", b'filename="=?utf-8?b?Li4vLi4vZXZpbC5zaA==?="', "../../evil.sh"),
    ("rfc2231", b"filename*=utf-8''..%2F..%2Fevil%2Esh", "../../evil.sh"),
    ("dot", b'filename="."', None),
    ("empty", b'filename=""', None),
]


def _with_attachments() -> bytes:
    parts = [b"Content-Type: text/plain\r\n\r\nSee the attached files.\r\n"]
    for n, (_id, disposition, _want) in enumerate(HOSTILE_NAMES):
        parts.append(
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; " + disposition + b"\r\n\r\n"
            + base64.encodebytes(b"payload %d\n" % n)
        )  # fmt: skip
    body = b"".join(b"--b\r\n" + p + b"\r\n" for p in parts) + b"--b--\r\n"
    return (
        b"From: Jane <jane@acme.example>\r\nTo: support@msp.example\r\nSubject: files\r\n"
        b"Message-ID: <files@acme.example>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + body
    )


def test_attachment_names_cannot_escape_the_store(tmp_path):
    """Every file written is <db>.files/xx/<sha256 of its bytes>; names are rows, never paths."""
    work = tmp_path / "work"
    (work / "mail").mkdir(parents=True)
    (work / "mail" / "files.eml").write_bytes(_with_attachments())
    db = work / "db" / "t.db"
    before = {p for p in Path("/tmp").glob("evil*")}
    triage("replay", "--db", str(db), "--json", "--now", NOW, str(work / "mail"))
    files = db.with_name("t.db.files")
    written = sorted(p for p in work.rglob("*") if p.is_file() and p.parent != work / "mail")
    expected_db = {db}
    for p in written:
        if p in expected_db:
            continue
        rel = p.relative_to(files)  # raises if anything landed outside the store
        assert len(rel.parts) == 2 and re.fullmatch(r"[0-9a-f]{64}", rel.parts[1]), rel
        assert rel.parts[0] == rel.parts[1][:2]
        assert hashlib.sha256(p.read_bytes()).hexdigest() == rel.parts[1]
    assert {p for p in Path("/tmp").glob("evil*")} == before
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT filename, sha256, size FROM attachments ORDER BY id").fetchall()
    conn.close()
    assert len(rows) == len(HOSTILE_NAMES)
    for (name, sha, size), (case, _disposition, want) in zip(rows, HOSTILE_NAMES, strict=True):
        path = attachments.path_for(files, sha)
        assert path.is_file() and path.stat().st_size == size, case
        assert path.resolve().parent.parent == files.resolve(), case
        if want is not None:
            assert name == want, (case, name)  # kept verbatim, as data


def test_the_store_never_uses_a_name_to_build_a_path(tmp_path):
    """attachments.save takes only (root, sha256, data): a forged 'sha256' is refused by shape."""
    import inspect

    assert list(inspect.signature(attachments.save).parameters) == ["root", "sha256", "data"]
    data = b"x"
    sha = hashlib.sha256(data).hexdigest()
    assert attachments.save(tmp_path, sha, data) == tmp_path / sha[:2] / sha
    source = inspect.getsource(attachments)
    assert "filename" not in source.split("def save", 1)[1].split("def store_all", 1)[0]


# --------------------------------------------------------------------------- 3. SQL

SQL_METHODS = {"execute", "executemany", "executescript", "query"}
# (file, function): why the SQL text is not one literal. Everything a sender writes is a parameter.
SQL_ALLOWED = {
    (
        "triage/store/facts.py",
        "read",
    ): "the statement is the module constant FACTS_SQL, a literal; values are bound",
    (
        "triage/store/outbox.py",
        "claim",
    ): "one of two module constants (_CLAIM, _CLAIM_POSTGRES), literals; values bound",
    (
        "triage/store/delivery_claims.py",
        "claim.each_sink",
    ): "one of two module constants (_CLAIM, _CLAIM_POSTGRES), literals; values bound",
    (
        "triage/store/tickets.py",
        "outcome_counts",
    ): "one of three module constants, literals (SQLite's two, PostgreSQL's); values bound",
    (
        "triage/store/desk/canned.py",
        "open_count",
    ): "the module constant _OPEN_COUNT, built from the literal OPEN; no values",
    (
        "triage/store/sqlite.py",
        "Store.tickets",
    ): "a literal plus an optional literal WHERE; no values",
    (
        "triage/store/sqlite.py",
        "Store.outbox",
    ): "one '?' per status: placeholders only, values bound",
    (
        "triage/store/migrations.py",
        "deliveries_table",
    ): "the statements of the module constant deliveries.DDL, a literal; no values",
    (
        "triage/store/mailboxes.py",
        "update",
    ): "column names are keyword names written in triage's code",
    (
        "triage/store/migrations.py",
        "_pragma",
    ): "a PRAGMA's name and an int: the migration's number, a busy timeout",
    (
        "triage/store/migrations.py",
        "_unlink_orphans",
    ): "table and column names from schema.FOREIGN_KEYS; row ids bound",
    (
        "triage/store/outbox.py",
        "recover",
    ): "the statements of the module constant _CLAIMS, literals; the owner bound",
    (
        "triage/sources/imap/connection.py",
        "Connection._starttls",
    ): "protocol.execute(command) is IMAP, not SQL",
    # PostgreSQL: the callers' statements (each checked here at its own call site) spelled
    # for PostgreSQL by store/dialect.py, which rewrites syntax only, never a value
    ("triage/store/postgres.py", "Connection.execute"): "the caller's statement, respelled",
    ("triage/store/postgres.py", "Connection.executemany"): "the caller's statement, respelled",
    ("triage/store/postgres.py", "Rows.query"): "the caller's statement, respelled",
    ("triage/store/postgres.py", "Rows.execute"): "the caller's statement, passed on",
    (
        "triage/store/postgres_schema.py",
        "release_schema",
    ): "table, column and index names and types from store/schema.py; no values",
    (
        "triage/store/postgres_schema.py",
        "deliveries_table",
    ): "the statements of the module constant deliveries.DDL, a literal; no values",
    (
        "triage/store/migrations.py",
        "years_of_mail",
    ): "the statements of the module constant schema.YEARS_INDEXES, literals; no values",
    (
        "triage/store/postgres_schema.py",
        "years_of_mail",
    ): "the statements of the module constant schema.YEARS_INDEXES, literals; no values",
    (
        "triage/store/migrations.py",
        "report_outcomes",
    ): "the module constant schema.OUTCOMES_INDEX, literals; no values",
}


def _literal(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):  # "a" "b" split over lines
        return _literal(node.left) and _literal(node.right)
    return False


def _sql_calls() -> list[tuple[str, str, int, str]]:
    """(file, enclosing function, line, source) of every SQL call whose text is not a literal."""
    out: list[tuple[str, str, int, str]] = []
    for path in sorted((ROOT / "triage").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        _visit(ast.parse(path.read_text(encoding="utf-8")), [], rel, out)
    return out


def _visit(node: ast.AST, scope: list[str], rel: str, out: list) -> None:
    for child in ast.iter_child_nodes(node):
        inner = scope
        if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            inner = [*scope, child.name]
        if (
            isinstance(child, ast.Call)
            and isinstance(child.func, ast.Attribute)
            and child.func.attr in SQL_METHODS
            and child.args
            and not _literal(child.args[0])
        ):
            out.append(
                (rel, ".".join(scope) or "<module>", child.lineno, ast.unparse(child.args[0]))
            )
        _visit(child, inner, rel, out)


def test_sql_is_built_only_from_literals_except_the_reviewed_places():
    calls = _sql_calls()
    unknown = [c for c in calls if (c[0], c[1]) not in SQL_ALLOWED]
    assert not unknown, (
        "SQL built from non-literal text; use ? parameters or review and allow-list:\n"
        + "\n".join(f"  {f}:{line} in {fn}: {src[:100]}" for f, fn, line, src in unknown)
    )
    stale = set(SQL_ALLOWED) - {(c[0], c[1]) for c in calls}
    assert not stale, f"allow-list entries that no longer build SQL: {stale}"
    doc = DOCS.read_text(encoding="utf-8")
    for file, fn in SQL_ALLOWED:
        assert f"`{fn}`" in doc, f"docs/security.md does not explain {file} {fn}"


def test_sql_injection_in_every_header_is_stored_verbatim(tmp_path):
    nasty = "Robert'); DROP TABLE tickets; -- \"x\" `y` ''"
    name = nasty.replace('"', "")  # a quoted display name cannot hold its own quotes
    raw = build(
        {
            "From": f'"{name}" <bobby@acme.example>',
            "To": "support@msp.example",
            "Subject": f"{nasty} 1' OR '1'='1",
            "Date": "Tue, 10 Mar 2026 09:00:00 +0000",
            "Message-ID": "<x');DROP/**/TABLE/**/messages;--@acme.example>",
        },
        body=f"{nasty}\n",
    )
    mail = tmp_path / "m.eml"
    mail.write_bytes(raw)
    db = tmp_path / "t.db"
    out = [
        json.loads(x)
        for x in triage(
            "replay", "--db", str(db), "--json", "--now", NOW, str(mail)
        ).stdout.splitlines()
    ]
    assert (
        out[0]["action"] == "ticket"
        and out[0]["message_id"] == "<x');DROP/**/TABLE/**/messages;--@acme.example>"
    )
    conn = sqlite3.connect(db)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"tickets", "messages", "events", "outbox", "attachments", "contacts"} <= tables
        subject, requester_name = conn.execute(
            "SELECT subject, requester_name FROM tickets"
        ).fetchone()
        assert subject == f"{nasty} 1' OR '1'='1" and requester_name == name
        assert conn.execute("SELECT message_id, body FROM messages").fetchone() == (
            "<x');DROP/**/TABLE/**/messages;--@acme.example>",
            f"{nasty}\r\n",  # the body as it came, line ending included
        )
        assert conn.execute("SELECT COUNT(*) FROM tickets").fetchone()[0] == 1
    finally:
        conn.close()
    again = triage("tickets", "--db", str(db), "--json").stdout
    assert json.loads(again.splitlines()[0])["subject"] == f"{nasty} 1' OR '1'='1"


# --------------------------------------------------------------------------- 4. templates


@pytest.fixture
def rules_copy(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    config = tmp_path / "triage.toml"
    config.write_text(f'[rules]\ndir = "{rules}"\n', encoding="utf-8")
    return rules, config


@pytest.mark.parametrize(
    "placeholder",
    [
        "${ticket.__class__}",
        "$__class__",
        "${__class__}",
        "${ticket[0]}",
        "${subject!r}",
        "$__globals__",
        "${0}",
    ],
)
def test_a_template_reaching_for_attributes_is_refused_by_check(rules_copy, placeholder):
    rules, config = rules_copy
    path = rules / "templates" / "ack.txt"
    path.write_text(path.read_text(encoding="utf-8") + f"\n{placeholder}\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", "--config", str(config)])
    assert result.exit_code != 0, result.output
    assert str(path) in result.output and "fix" in result.output.lower()


def test_braces_and_dots_in_a_template_are_only_text(rules_copy, tmp_path):
    """`{0.__class__}` is not a placeholder for string.Template: it is printed as written."""
    rules, config = rules_copy
    path = rules / "templates" / "ack.txt"
    path.write_text("T $ticket.__class__ {0.__class__} {ticket} %(ticket)s\n", encoding="utf-8")
    assert CliRunner().invoke(cli, ["check", "--config", str(config)]).exit_code == 0
    mail = tmp_path / "m.eml"
    mail.write_bytes(human(Subject="{0.__class__.__init__.__globals__} ${ticket} $support_address"))
    acks = tmp_path / "acks"
    triage(
        "replay",
        "--config",
        str(config),
        "--dry-run",
        "--now",
        NOW,
        "--acks-dir",
        str(acks),
        str(mail),
    )
    [ack] = acks.glob("*.eml")
    text = ack.read_text(encoding="utf-8")
    assert "T T-000001.__class__ {0.__class__} {ticket} %(ticket)s" in text
    assert "<class" not in text and "function" not in text
    # the sender's subject went in once, as data: its $names were not filled in again
    assert "${ticket}" in text or "=24{ticket}" in text


def test_rendering_never_formats_with_str_format():
    """No .format / .format_map / % on text in the modules that render what a sender wrote."""
    for name in ("core/templates.py", "core/replies.py"):
        tree = ast.parse((ROOT / "triage" / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in ("format", "format_map"), f"{name}:{node.lineno}"
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
                assert not (
                    isinstance(node.left, ast.Constant) and isinstance(node.left.value, str)
                ), f"{name}:{node.lineno}: %-formatting"


# --------------------------------------------------------------------------- 5. plain text


@pytest.mark.parametrize("section", ["mailbox", "smtp"])
def test_plain_text_is_refused_unless_allowed(tmp_path, section):
    (tmp_path / "pw").write_text("x\n")
    (tmp_path / "pw").chmod(0o600)  # a password file open to all is refused on its own
    body = 'host = "mail.example"\ntls = "none"\nusername = "u"\npassword_file = "pw"\n'
    head = '[[mailbox]]\nname = "support"\n' if section == "mailbox" else "[smtp]\n"
    config = tmp_path / "triage.toml"
    config.write_text(head + body, encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", "--config", str(config)])
    key = "mailbox[0].tls" if section == "mailbox" else "smtp.tls"
    assert result.exit_code != 0
    assert key in result.output and "allow_insecure = true" in result.output
    assert 'tls = "tls"' in result.output  # the fix: use TLS, or allow it on purpose
    for not_true in ('"true"', "1", '"yes"'):
        config.write_text(head + body + f"allow_insecure = {not_true}\n", encoding="utf-8")
        assert CliRunner().invoke(cli, ["check", "--config", str(config)]).exit_code != 0, not_true
    config.write_text(head + body + "allow_insecure = true\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", "--config", str(config)])
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------- 6. permissions


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_database_and_stores_are_owner_only(tmp_path):
    """After a replay with attachments and a quarantined message, under umask 022."""
    mail = tmp_path / "mail"
    mail.mkdir()
    (mail / "1.eml").write_bytes(_with_attachments())
    (mail / "2.eml").write_bytes(b"From: a@b.example\r\nSubject: a\x00b\r\n\r\nx")  # quarantined
    db = tmp_path / "state" / "t.db"
    out = triage("replay", "--db", str(db), "--json", "--now", NOW, str(mail)).stdout
    assert [json.loads(x)["action"] for x in out.splitlines()] == ["ticket", "quarantined"]
    files = db.with_name("t.db.files")
    assert _mode(db.parent) == 0o700  # made by triage
    assert _mode(db) == 0o600
    assert _mode(files) == 0o700
    quarantine = files / "quarantine"
    assert _mode(quarantine) == 0o700 and len(list(quarantine.glob("*.eml"))) == 1
    for p in files.rglob("*"):
        assert _mode(p) == (0o700 if p.is_dir() else 0o600), p
    # the WAL and shared-memory files exist while the database is open
    store = Store(db)
    try:
        store.begin()
        store.conn.execute("INSERT INTO events (kind, at, detail) VALUES ('x', 'now', '{}')")
        store.commit()
        for suffix in ("-wal", "-shm"):
            side = db.with_name(db.name + suffix)
            assert side.exists() and _mode(side) == 0o600, suffix
    finally:
        store.close()


def test_an_attachment_folder_left_open_by_an_earlier_release_is_narrowed(tmp_path):
    db = tmp_path / "t.db"
    Store(db).close()
    files = db.with_name("t.db.files")
    os.chmod(files, 0o755)
    Store(db).close()
    assert _mode(files) == 0o700


# --------------------------------------------------------------------------- 7. forged senders


def test_no_acknowledgement_reaches_a_forged_sender_through_smtp(tmp_path, smtp_sink):
    """Routing decides it (tests/test_routing.py); here the outbox drains to a real SMTP server."""
    db = tmp_path / "t.db"
    config = Config(
        db=db, support_address="support@msp.example", own_domains=frozenset({"msp.example"})
    )
    forged = human(
        From="Victor <victor@acme.example>",
        Message_ID="<forged@acme.example>",
        Authentication_Results="mx.msp.example; spf=fail smtp.mailfrom=acme.example; dkim=none; dmarc=fail header.from=acme.example",
    )
    genuine = human(
        From="Jane <jane@acme.example>",
        Message_ID="<genuine@acme.example>",
        Subject="Something else",
        Authentication_Results="mx.msp.example; spf=pass; dkim=pass; dmarc=pass header.from=acme.example",
    )
    store = Store(db)
    store.outbox_status = "pending"
    decided = []
    replay(
        [Item("forged", forged), Item("genuine", genuine)],
        Rules.load(config),
        store,
        NOW_DT,
        decided.append,
    )
    store.close()
    assert [(d.action, d.auto_reply) for d in decided] == [("ticket", False), ("ticket", True)]
    assert "failed authentication" in (decided[0].reply_suppressed or "")
    store = Store(db)
    try:
        sender = outbox.Sender(Smtp("127.0.0.1", smtp_sink.port, "none"), "support@msp.example")
        result = asyncio.run(outbox.drain(store, sender, now=lambda: NOW_DT))
    finally:
        store.close()
    assert result.sent == 1
    [(_from, rcpts, _raw)] = smtp_sink.wait_for(1)
    assert rcpts == ["jane@acme.example"]
    assert all("victor" not in r for m in smtp_sink.messages() for r in m[1])


def test_an_encoded_word_never_adds_a_recipient_through_smtp(tmp_path, smtp_sink):
    """Issue 12.1 on the wire: what the relay is asked to deliver, and to whom."""
    db = tmp_path / "t.db"
    config = Config(
        db=db, support_address="support@msp.example", own_domains=frozenset({"msp.example"})
    )
    messages = [
        human(From="=?utf-8?q?Eve=0D=0ABcc=3A_x=40y?= <eve@evil.example>", Message_ID="<i1@x>"),
        human(
            From="eve@evil.example",
            Reply_To="=?utf-8?q?jane=40acme=2Eexample?= <eve2@evil.example>",
            Message_ID="<i2@x>",
            Subject="two",
        ),
        human(From='"eve\r\n RCPT TO:<x@y>"@evil.example', Message_ID="<i3@x>", Subject="3"),
    ]
    store = Store(db)
    store.outbox_status = "pending"
    replay(
        [Item(f"m{n}", raw) for n, raw in enumerate(messages)],
        Rules.load(config),
        store,
        NOW_DT,
        lambda d: None,
    )
    try:
        sender = outbox.Sender(Smtp("127.0.0.1", smtp_sink.port, "none"), "support@msp.example")
        result = asyncio.run(outbox.drain(store, sender, now=lambda: NOW_DT))
    finally:
        store.close()
    assert result.sent == 2
    got = smtp_sink.wait_for(2)
    assert sorted(r for _f, rcpts, _raw in got for r in rcpts) == [
        "eve2@evil.example",
        "eve@evil.example",
    ]
    for _f, _rcpts, raw in got:
        head = raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"\n")
        assert b"Bcc" not in head and b"x@y" not in head and b"jane@" not in head


# --------------------------------------------------------------------------- 8. systemd


def test_exposure_figure_is_recorded_and_current():
    doc = DOCS.read_text(encoding="utf-8")
    recorded = re.findall(r"Overall exposure level for triage\.service: (\d+\.\d+)", doc)
    runbook = re.findall(
        r"Overall exposure level for triage\.service: (\d+\.\d+)",
        (ROOT / "docs" / "operations.md").read_text(encoding="utf-8"),
    )
    assert recorded and recorded == runbook
    assert "systemd-analyze security --offline=yes" in doc
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    done = subprocess.run(
        [
            analyze,
            "security",
            "--offline=yes",
            "--no-pager",
            str(ROOT / "systemd" / "triage.service"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT / "systemd",
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    if found is None:
        pytest.skip(
            f"systemd-analyze security --offline=yes does not work here: {done.stderr[-200:]}"
        )
    assert abs(float(found.group(1)) - float(recorded[0])) <= 0.5, (found.group(1), recorded)
