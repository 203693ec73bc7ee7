"""`triage replay` end to end: fixtures against expected outcomes, duplicates, bad input."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import FIXTURES, ROOT, build, human

NOW = "2026-03-10T14:30:00Z"
EXPECTED = [
    json.loads(line)
    for line in (FIXTURES / "expected.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
]
FIELDS = {
    "source",
    "message_id",
    "action",
    "reason",
    "ticket",
    "priority",
    "contact",
    "match",
    "due",
    "auto_reply",
}


def triage(*args: str, cwd: Path = ROOT, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "triage.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"triage {' '.join(args)} exited {proc.returncode}\n{proc.stderr}")
    return proc


def lines(proc: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.fixture(scope="module")
def fixture_run() -> list[dict]:
    return lines(triage("replay", "--dry-run", "--json", "--now", NOW, str(FIXTURES)))


def test_one_json_object_per_fixture_with_the_contract_fields(fixture_run):
    emls = sorted(p.name for p in FIXTURES.rglob("*.eml"))
    assert [Path(o["source"]).name for o in fixture_run] == emls
    for obj in fixture_run:
        assert set(obj) >= FIELDS


@pytest.mark.parametrize("expected", EXPECTED, ids=[e["file"] for e in EXPECTED])
def test_fixture_outcome(fixture_run, expected):
    got = next(o for o in fixture_run if Path(o["source"]).name == expected["file"])
    assert (got["action"], got["reason"], got["priority"]) == (
        expected["action"],
        expected["reason"],
        expected["priority"],
    ), got


def test_every_filter_rule_fires_on_its_fixture_and_no_other(fixture_run, rules):
    by_rule: dict[str, list[str]] = {}
    for o in fixture_run:
        if o["action"] == "filtered":
            by_rule.setdefault(o["reason"], []).append(Path(o["source"]).name)
    seen, shadowed = set(), []
    for rule in rules.filters.rules:
        same = (rule.field, rule.test, rule.phrases)
        if same in seen:
            shadowed.append(rule.id)  # an earlier rule tests the same thing; it always wins
            continue
        seen.add(same)
        assert rule.id in by_rule, f"no fixture is filtered by {rule.id}"
    assert shadowed == ["sow-from-DO-NOT-REPLY"]  # the SOW lists it apart from do-not-reply@
    # no rule steals another rule's fixture: the expected reason is the one that fired
    for e in EXPECTED:
        if e["action"] == "filtered":
            assert e["file"] in by_rule[e["reason"]]


def test_tickets_carry_deadlines_and_filtered_mail_none(fixture_run):
    for o in fixture_run:
        if o["action"] == "ticket":
            assert o["ticket"] and o["priority"] and o["due"], o
        if o["action"] == "filtered":
            assert o["ticket"] is None and o["auto_reply"] is False


def test_replaying_twice_creates_nothing_new(tmp_path):
    db = tmp_path / "t.db"
    first = lines(triage("replay", "--db", str(db), "--json", "--now", NOW, str(FIXTURES)))
    second = lines(triage("replay", "--db", str(db), "--json", "--now", NOW, str(FIXTURES)))
    assert {o["action"] for o in second} == {"duplicate"}
    import sqlite3

    conn = sqlite3.connect(db)
    tickets = conn.execute("SELECT COUNT(*) FROM tickets").fetchone()[0]
    messages = conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    assert tickets == sum(o["action"] == "ticket" for o in first)
    assert messages == len(first)
    numbers = [r[0] for r in conn.execute("SELECT number FROM tickets ORDER BY id")]
    assert numbers[0] == "T-000001" and all(n.startswith("T-") and len(n) == 8 for n in numbers)
    assert oct(db.stat().st_mode & 0o777) == "0o600"


def test_bad_input_is_quarantined_and_the_rest_goes_on(tmp_path):
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "01-empty.eml").write_bytes(b"")
    (folder / "02-not-email.eml").write_bytes(b"Dear diary, today nothing happened.")
    (folder / "03-huge.eml").write_bytes(human(body="x" * (30 * 1024 * 1024)))
    nested = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(1000)
    )
    (folder / "04-nested.eml").write_bytes(
        b"From: a@b.example\r\nSubject: deep\r\nMIME-Version: 1.0\r\n" + nested.encode()
    )
    (folder / "05-nul.eml").write_bytes(b"From: a@b.example\r\nSubject: a\x00b\r\n\r\nx")
    (folder / "06-bare-cr.eml").write_bytes(b"From: a@b.example\r\nSubject: a\rb\r\n\r\nx")
    (folder / "07-good.eml").write_bytes(human())
    db = tmp_path / "t.db"
    out = lines(triage("replay", "--db", str(db), "--json", "--now", NOW, str(folder)))
    assert [(o["action"], o["reason"]) for o in out] == [
        ("quarantined", "empty"),
        ("quarantined", "not_email"),
        ("quarantined", "too_large"),
        ("quarantined", out[3]["reason"]),
        ("quarantined", "bad_header"),
        ("quarantined", "bad_header"),
        ("ticket", None),
    ]
    assert out[3]["reason"] in ("too_deep", "too_many_parts")
    kept = list((tmp_path / "t.db.files" / "quarantine").glob("*.eml"))
    assert len(kept) == 6  # nothing lost: every unreadable message's bytes are kept


def test_nothing_readable_exits_non_zero_with_a_reason(tmp_path):
    proc = triage("replay", "--dry-run", str(tmp_path / "missing"), check=False)
    assert proc.returncode != 0 and "nothing could be read" in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = triage("replay", "--dry-run", str(tmp_path / "empty"), check=False)
    assert proc.returncode != 0 and "nothing could be read" in proc.stderr


def test_logs_go_to_stderr_and_never_hold_bodies(tmp_path):
    secret = "the-body-says-hunter2"
    path = tmp_path / "m.eml"
    path.write_bytes(human(body=f"Hello,\n{secret}\n"))
    proc = triage("replay", "--dry-run", "--json", "--now", NOW, str(path))
    assert [json.loads(line)["action"] for line in proc.stdout.splitlines()] == ["ticket"]
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert any(e.get("event") == "message_triaged" and e.get("action") == "ticket" for e in events)
    assert secret not in proc.stderr


def test_reply_appends_and_token_from_stranger_links(tmp_path):
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "1.eml").write_bytes(human())
    (folder / "2.eml").write_bytes(
        human(
            Message_ID="<r1@mail.acme.example>",
            In_Reply_To="<abc123@mail.acme.example>",
            Subject="Re: Printer",
        )
    )
    (folder / "3.eml").write_bytes(
        build(
            {
                "From": "mallory@gmail.com",
                "To": "support@msp.example",
                "Subject": "Re: [#T-000001] give me the file",
                "Message-ID": "<m@gmail.com>",
                "Date": "Tue, 10 Mar 2026 10:00:00 +0000",
            }
        )
    )
    out = lines(triage("replay", "--dry-run", "--json", "--now", NOW, str(folder)))
    assert [(o["action"], o["ticket"]) for o in out] == [
        ("ticket", "T-000001"),
        ("append", "T-000001"),
        ("ticket", "T-000002"),
    ]
    assert out[2]["linked_ticket"] == "T-000001"
    assert [o["auto_reply"] for o in out] == [True, False, True]


def test_mbox_and_maildir_sources(tmp_path):
    mbox = tmp_path / "box.mbox"
    mbox.write_bytes(
        b"From a@b Tue Mar 10 09:00:00 2026\n"
        + human().replace(b"\r\n", b"\n")
        + b"\nFrom c@d Tue Mar 10 09:00:00 2026\n"
        + human(Message_ID="<two@x>").replace(b"\r\n", b"\n")
    )
    maildir = tmp_path / "md"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "new" / "1700000000.1.host").write_bytes(human(Message_ID="<three@x>"))
    out = lines(triage("replay", "--dry-run", "--json", "--now", NOW, str(mbox), str(maildir)))
    assert [o["message_id"] for o in out] == ["<abc123@mail.acme.example>", "<two@x>", "<three@x>"]
    assert [o["source"].rsplit("#", 1)[-1] for o in out[:2]] == ["1", "2"]


def test_a_reused_message_id_is_a_new_message_but_a_second_copy_is_not(tmp_path):
    folder = tmp_path / "mail"
    folder.mkdir()
    first = human(Message_ID="<same@x>", Subject="This is a test", body="first\n")
    (folder / "1.eml").write_bytes(first)
    # the same message again, delivered by another route: one more Received header, LF endings
    (folder / "2.eml").write_bytes(
        b"Received: from relay2.example by mx\r\n" + first.replace(b"\r\n", b"\n")
    )
    # a different message that reuses the Message-ID (some clients and test tools do)
    (folder / "3.eml").write_bytes(
        human(Message_ID="<same@x>", Subject="This is another test", body="second\n")
    )
    db = tmp_path / "t.db"
    out = lines(triage("replay", "--db", str(db), "--json", "--now", NOW, str(folder)))
    assert [o["action"] for o in out] == ["ticket", "duplicate", "ticket"]
    again = lines(triage("replay", "--db", str(db), "--json", "--now", NOW, str(folder)))
    assert [o["action"] for o in again] == ["duplicate", "duplicate", "duplicate"]


def test_a_second_copy_with_only_another_date_header_is_a_duplicate(tmp_path):
    """A relay or a client that re-sends rewrites Date; the message (and its ticket) is one."""
    folder = tmp_path / "mail"
    folder.mkdir()
    first = human(Message_ID="<dated@x>", Date="Tue, 10 Mar 2026 09:12:00 +0000")
    (folder / "1.eml").write_bytes(first)
    (folder / "2.eml").write_bytes(
        human(Message_ID="<dated@x>", Date="Tue, 10 Mar 2026 10:47:31 +0100")
    )
    db = tmp_path / "t.db"
    out = lines(triage("replay", "--db", str(db), "--json", "--now", NOW, str(folder)))
    assert [(o["action"], o["auto_reply"]) for o in out] == [("ticket", True), ("duplicate", False)]
    rows = sqlite3.connect(db).execute("SELECT COUNT(*) FROM tickets").fetchone()[0]
    acks = sqlite3.connect(db).execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    assert (rows, acks) == (1, 1)


def test_messages_stored_with_the_dated_fingerprint_of_earlier_releases_stay_duplicates(tmp_path):
    """Releases before this one put the Date header in the fingerprint; a copy fetched again
    after an upgrade (a rescan, a crash before the move) must not open a second ticket."""
    from triage.core.message import read

    folder = tmp_path / "mail"
    folder.mkdir()
    plain = human(Message_ID="<old@x>", Subject="first")
    reused = human(Message_ID="<old@x>", Subject="second", body="another text\n")
    (folder / "1.eml").write_bytes(plain)
    (folder / "2.eml").write_bytes(reused)
    db = tmp_path / "t.db"
    out = lines(triage("replay", "--db", str(db), "--json", "--now", NOW, str(folder)))
    assert [o["action"] for o in out] == ["ticket", "ticket"]
    # rewrite what was stored as an earlier release stored it
    conn = sqlite3.connect(db)
    for raw in (plain, reused):
        email = read(raw).head
        new_key = "<old@x>" if b"first" in raw else f"<old@x>#{email.fingerprint}"
        old_key = "<old@x>" if b"first" in raw else f"<old@x>#{email.old_fingerprint}"
        conn.execute(
            "UPDATE messages SET message_key = ?, fingerprint = ? WHERE message_key = ?",
            (old_key, email.old_fingerprint, new_key),
        )
    conn.commit()
    conn.close()
    again = lines(triage("replay", "--db", str(db), "--json", "--now", NOW, str(folder)))
    assert [o["action"] for o in again] == ["duplicate", "duplicate"]


def test_a_folder_is_read_in_path_order_component_by_component(tmp_path):
    """Nested folders, a maildir inside and an mbox: order is by path parts, tmp/ skipped."""
    from triage.sources.files import iter_paths

    root = tmp_path / "mail"
    for rel in ("b.eml", "a/z.eml", "a.b/c.eml", "a/y/x.eml", "notes.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(human(Message_ID=f"<{rel}@x>"))
    for sub in ("cur", "new", "tmp"):
        (root / "md" / sub).mkdir(parents=True)
    (root / "md" / "new" / "1.host").write_bytes(human())
    (root / "md" / "tmp" / "2.host").write_bytes(human())
    (root / "box").write_bytes(b"From a@b Tue Mar 10 09:00:00 2026\n" + human())
    names = [os.path.relpath(i.source, root) for i in iter_paths([root])]
    assert names == ["a/y/x.eml", "a/z.eml", "a.b/c.eml", "b.eml", "box#1", "md/new/1.host"]
