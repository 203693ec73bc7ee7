"""The shape of the tree: SQL only under triage/store/, no module in triage/ over 400 lines.

Both are read from the source with `ast` and line counts, so a query pasted into the daemon
or a module grown past one concern fails here, naming the file, the line and the fix.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .conftest import ROOT

TRIAGE = ROOT / "triage"
STORE = TRIAGE / "store"

# Statement shapes, not single words: IMAP has its own SELECT and CREATE, prose its own "from".
SQL = re.compile(
    r"\bSELECT\b[\s\S]*\bFROM\b"
    r"|\bINSERT\s+(?:OR\s+\w+\s+)?INTO\b"
    r"|\bUPDATE\s+\w+\s+SET\b"
    r"|\bDELETE\s+FROM\b"
    r"|\b(?:CREATE|DROP|ALTER)\s+(?:UNIQUE\s+)?(?:TABLE|INDEX|VIEW|TRIGGER)\b"
    r"|\bPRAGMA\s+\w+"
    r"|^\s*(?:BEGIN(?:\s+(?:IMMEDIATE|EXCLUSIVE|DEFERRED))?|COMMIT|ROLLBACK|SAVEPOINT\s+\w+)\s*;?\s*$",
    re.IGNORECASE,
)

# Files outside triage/store/ that still hold SQL, each with the reason. Nothing else may.
SQL_KNOWN: set[str] = set()  # modules outside triage/store/ still allowed SQL: none

LIMIT = 400  # lines; a module over it is two concerns (docs/architecture.md)
LONG_KNOWN: set[str] = set()  # modules over LIMIT still to split, each with the reason


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes: prose about a query is not a query."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def _text(node: ast.expr) -> str | None:
    """The text of a string literal, an f-string or a `+` of them (what is not text, as `?`)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "?" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left), _text(node.right)
        if left is not None or right is not None:
            return (left or "?") + (right or "?")
    return None


def sql_in(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string in `source` that reads as an SQL statement."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    found: list[tuple[int, str]] = []
    parts: set[int] = set()  # strings already seen as part of a larger `+` or f-string
    for node in ast.walk(tree):
        if id(node) in skip or id(node) in parts or not isinstance(node, ast.expr):
            continue
        text = _text(node)
        if text is None:
            continue
        parts.update(id(n) for n in ast.walk(node) if n is not node)
        if SQL.search(text):
            found.append((node.lineno, " ".join(text.split())[:80]))
    return sorted(found)


def reach_in(source: str) -> list[tuple[int, str]]:
    """(line, code) of every use of the Store's connection or sqlite-utils database:
    `x.conn`, `x.db[...]`, `x.db.query(...)` and the like: SQL by another name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "conn":
            found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Subscript | ast.Attribute):
            inner = node.value
            if isinstance(inner, ast.Attribute) and inner.attr == "db":
                found.append((node.lineno, ast.unparse(node)))
    return sorted(found)


def _modules() -> list[Path]:
    return sorted(p for p in TRIAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_scan_finds_sql_and_leaves_imap_and_prose_alone():
    """The scan itself: each shape of statement is found, IMAP commands and prose are not."""
    found = sql_in(
        '"""SELECT the folder FROM the docstring is prose."""\n'
        'a = "SELECT action FROM messages WHERE message_key = ?"\n'
        'b = "SELECT id" + columns + " FROM tickets"\n'
        'c = f"INSERT INTO {table} (a) VALUES (?)"\n'
        'd = "UPDATE tickets SET status = ?"\n'
        'e = "delete from events"\n'
        'f = "BEGIN IMMEDIATE"\n'
        'g = "PRAGMA user_version"\n'
        'h = "CREATE INDEX IF NOT EXISTS x ON t (a)"\n'
        'i = "SELECT"\n'
        'j = f"CREATE {folder!r} was refused"\n'
        'k = "UID FETCH 1:* (UID FLAGS)"\n'
    )
    assert [line for line, _ in found] == [2, 3, 4, 5, 6, 7, 8, 9]
    reached = reach_in(
        "store.conn.execute(q)\n"
        'store.db["outbox"].add_column("x", str)\n'
        "rows = store.db.query(q)\n"
        "path = config.db\n"
        "Store(config.db, prefix)\n"
    )
    assert [line for line, _ in reached] == [1, 2, 3]


def test_sql_appears_only_under_triage_store():
    """Every SQL statement lives in triage/store/, behind functions named for what they do,
    so a second backend implements those functions and nothing else changes."""
    found = []
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        if path.is_relative_to(STORE):
            continue
        source = path.read_text(encoding="utf-8")
        if rel in SQL_KNOWN:
            continue
        found += [f"  {rel}:{line}: {text}" for line, text in sql_in(source) + reach_in(source)]
    assert not found, (
        "SQL (or the Store's connection) outside triage/store/; fix: move it into a"
        " triage/store/ module as a function"
        " that takes the Store and values and returns values:\n" + "\n".join(found)
    )
    texts = {rel: (ROOT / rel).read_text(encoding="utf-8") for rel in SQL_KNOWN}
    gone = {rel for rel, text in texts.items() if not sql_in(text) and not reach_in(text)}
    assert not gone, f"no SQL left in {sorted(gone)}; fix: remove them from SQL_KNOWN"


def test_no_module_in_triage_is_over_400_lines():
    """A module over about 400 lines is two concerns (docs/architecture.md)."""
    long = {}
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > LIMIT:
            long[rel] = lines
    unknown = {rel: n for rel, n in long.items() if rel not in LONG_KNOWN}
    assert not unknown, f"modules over {LIMIT} lines; fix: split each by concern:\n" + "\n".join(
        f"  {rel}: {n} lines" for rel, n in sorted(unknown.items())
    )
    fixed = LONG_KNOWN - set(long)
    assert not fixed, f"{sorted(fixed)} are short now; fix: remove them from LONG_KNOWN"


def test_a_command_starts_without_numpy_and_the_report_still_gets_it():
    """sqlite-utils would import numpy (brought by matplotlib) at every start, to map types
    triage never stores: triage/store/library.py hides it for that one import."""
    import subprocess
    import sys

    code = (
        "import sys, triage.cli, triage.store.sqlite\n"
        "assert 'numpy' not in sys.modules, 'numpy imported at start'\n"
        "import numpy, sqlite_utils\n"
        "assert sqlite_utils.Database(memory=True).execute('select 1').fetchone() == (1,)\n"
        "print(numpy.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "numpy"
