"""The core decides with no database at all: values in, the same decisions as replay out.

Every fixture is analysed and decided here against `Facts` built by hand (empty, then
carried forward with `Facts.after`), then the same folder is replayed into a database by
`triage replay`; the two must agree on every field of the replay contract. The folder is
given twice, so the second pass is all duplicates, found from the facts the first left.
"""

from __future__ import annotations

import ast
import json
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from triage.config import Config
from triage.core.pipeline import Facts, Rules, analyse, decide, render
from triage.core.replies import AckIds
from triage.store import contacts as contacts_store
from triage.store.sqlite import Store

from .conftest import FIXTURES, ROOT, human
from .test_replay import lines, triage

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
NOW_TEXT = "2026-03-10T14:30:00Z"


def in_core(paths: list[Path], rules: Rules) -> tuple[list[dict], list[tuple[str, str, str]]]:
    """Each message decided and rendered by the core alone, the facts carried forward by hand.

    Returns the decisions as replay prints them, and (ticket, to, subject) of each
    acknowledgement rendered.
    """
    facts = Facts.empty()
    decided, acks = [], []
    for n, path in enumerate(paths):
        d = decide(analyse(path.read_bytes(), str(path), rules), facts, rules, NOW)
        rendered = render(d, rules, NOW, AckIds(f"{n:016x}", f"{n:024x}"))
        facts = facts.after(rendered, NOW)
        decided.append(d.as_json())
        if rendered.ack is not None:
            acks.append((d.ticket, rendered.ack.to, rendered.ack.subject))
    return decided, acks


def replayed(db: Path, *args: str) -> tuple[list[dict], list[tuple[str, str, str]]]:
    out = lines(triage("replay", "--db", str(db), "--json", "--now", NOW_TEXT, *args))
    with sqlite3.connect(db) as conn:
        acks = conn.execute(
            "SELECT t.number, o.to_addr, o.subject FROM outbox o JOIN tickets t"
            " ON t.id = o.ticket_id ORDER BY o.id"
        ).fetchall()
    return out, acks


@pytest.mark.parametrize("with_contacts", [False, True], ids=["no-contacts", "contacts"])
def test_every_fixture_is_decided_by_the_core_alone_as_replay_decides_it(tmp_path, with_contacts):
    db = tmp_path / "t.db"
    contacts: tuple = ()
    if with_contacts:  # exact, alias, domain and fuzzy matches, VIPs and plans
        triage("contacts", "import", "--db", str(db), str(ROOT / "fixtures" / "contacts.csv"))
        store = Store(db)
        contacts = contacts_store.load(store)
        store.close()
        assert contacts
    rules = Rules.load(Config(), contacts)
    paths = sorted(FIXTURES.glob("*.eml"))
    core, core_acks = in_core(paths * 2, rules)
    replay, replay_acks = replayed(db, str(FIXTURES), str(FIXTURES))
    assert [o["source"] for o in replay] == [str(p) for p in paths * 2]
    for mine, theirs in zip(core, replay, strict=True):
        assert mine == theirs, mine["source"]
    assert core_acks == replay_acks
    actions = {o["action"] for o in core}
    assert {"ticket", "append", "filtered", "review", "duplicate"} <= actions
    assert [o["action"] for o in core[len(paths) :]] == ["duplicate"] * len(paths)


def test_the_batch_sees_what_came_before_it_in_the_same_batch(rules, tmp_path):
    """A reply to a ticket opened two messages before, the sender's daily acknowledgement
    limit, and a second copy: all within one batch, decided from facts carried forward."""
    folder = tmp_path / "mail"
    folder.mkdir()
    messages = [
        human(Message_ID="<open@x>", Subject="Printer jammed"),
        human(From="Bob <bob@other.example>", Message_ID="<b@x>", Subject="VPN"),
        human(Message_ID="<reply@x>", In_Reply_To="<open@x>", Subject="Re: Printer jammed"),
        human(Message_ID="<open@x>", Subject="Printer jammed"),  # the first, again
        *(human(Message_ID=f"<n{i}@x>", Subject=f"request {i}") for i in range(5)),
    ]
    for n, raw in enumerate(messages):
        (folder / f"{n:02}.eml").write_bytes(raw)
    core, _ = in_core(sorted(folder.glob("*.eml")), rules)
    replay, _ = replayed(tmp_path / "t.db", str(folder))
    assert core == replay
    assert [(o["action"], o["ticket"]) for o in core[:4]] == [
        ("ticket", "T-000001"),
        ("ticket", "T-000002"),
        ("append", "T-000001"),
        ("duplicate", None),
    ]
    # jane@acme.example: acknowledged for T-000001, then four more: the limit of five a day
    assert [o["auto_reply"] for o in core[4:]] == [True, True, True, True, False]
    assert "5 acknowledgements in the last 24 hours" in core[-1]["reply_suppressed"]


def test_a_new_tickets_number_is_decided_from_the_facts(rules):
    raw = human(Message_ID="<n@x>")
    d = decide(analyse(raw, "m", rules), replace(Facts.empty(), next_ticket=41), rules, NOW)
    assert (d.action, d.ticket) == ("ticket", "T-000041")
    rendered = render(d, rules, NOW, AckIds("ab" * 8, "cd" * 12))
    assert rendered.ack is not None
    assert rendered.ack.message_id.startswith("<T-000041.abababababababab@")
    assert "[#T-000041]" in rendered.ack.subject


# --------------------------------------------------------------------------- purity

FORBIDDEN = {
    "asyncio",
    "multiprocessing",
    "random",
    "secrets",
    "socket",
    "sqlite3",
    "sqlite_utils",
    "subprocess",
    "triage.cli",
    "triage.engine",
    "triage.service",
    "triage.sinks",
    "triage.sources",
    "triage.store",
}
CLOCKS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}
# Reading the clock as a time budget (not a decision): TNEF's guard against a slow stream.
CLOCK_ALLOWED = {("triage/core/tnef.py", "monotonic")}


def _modules(tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append(node.module)
    return out


def test_the_core_imports_no_store_engine_edge_randomness_or_database():
    core = sorted((ROOT / "triage" / "core").rglob("*.py"))
    assert core
    found = []
    for path in core:
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name in _modules(tree):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                found.append((rel, name))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in CLOCKS
                and (rel, node.func.attr) not in CLOCK_ALLOWED
            ):
                found.append((rel, f"reads the clock: {ast.unparse(node)}"))
    assert found == []


def test_the_daemon_takes_its_pool_and_batches_from_the_engine_not_from_replay():
    for path in sorted((ROOT / "triage" / "service").rglob("*.py")):
        names = _modules(ast.parse(path.read_text(encoding="utf-8")))
        assert "triage.engine.replay" not in names, path
    service = [
        name
        for path in sorted((ROOT / "triage" / "service").rglob("*.py"))
        for name in _modules(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert {"triage.engine.pool", "triage.engine.batch"} <= set(service)


def test_core_results_are_plain_json_the_contract_names(rules):
    """What the core returns is the replay contract as it is, with no database behind it."""
    d = decide(analyse(human(), "m", rules), Facts.empty(), rules, NOW)
    out = json.loads(json.dumps(d.as_json()))
    assert out["action"] == "ticket" and out["ticket"] == "T-000001"
    assert out["due"].endswith("Z") and out["auto_reply"] is True
