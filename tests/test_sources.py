"""The Source protocol: one loop drains an IMAP mailbox and a folder of files alike."""

from __future__ import annotations

import asyncio
from pathlib import Path

from triage.config.endpoints import Mailbox, Secret
from triage.sources.base import Message, Source
from triage.sources.file_source import FileSource
from triage.sources.imap import ImapSession

from . import servers
from .conftest import build, human

MAX_BYTES = 5_000
MESSAGES = [
    human(Message_ID="<one@acme.example>"),
    build(
        {
            "From": "Jane Doe <jane@acme.example>",
            "To": "support@msp.example",
            "Subject": "Automatic reply: away",
            "Auto-Submitted": "auto-replied",
            "Message-ID": "<away@acme.example>",
        },
        "I am away until Monday.\n",
    ),
    human(Message_ID="<big@acme.example>", body="x" * (2 * MAX_BYTES) + "\n"),
    human(Message_ID="<two@acme.example>", Subject="VPN down"),
]


def outcome_of(raw: bytes | None) -> str:
    """Stands in for analyse, decide and the commit: where each message is filed."""
    if raw is None:
        return "errors"  # never fetched: over the size limit
    return "filtered" if b"Auto-Submitted: auto-replied" in raw else "processed"


async def drain(source: Source) -> dict[str, list[bytes | None]]:
    """The loop of triage/sources/base.py, two messages a batch: {outcome: [bytes]}."""
    assert isinstance(source, Source)
    filed: dict[str, list[bytes | None]] = {}
    stop = asyncio.Event()
    await source.open()
    try:
        while True:
            todo = list(await source.unprocessed())
            while todo:
                batch, left = await source.fetch(todo[:2], MAX_BYTES, budget=1_000_000)
                todo = [*left, *todo[2:]]
                by_outcome: dict[str, list] = {}
                for message in batch:
                    assert isinstance(message, Message)
                    outcome = outcome_of(message.raw)
                    by_outcome.setdefault(outcome, []).append(message.handle)
                    filed.setdefault(outcome, []).append(message.raw)
                for outcome, handles in by_outcome.items():  # "after the commit"
                    await source.ack(handles, outcome)
            stop.set()  # one pass: every message of the test is there already
            if not await source.wait(stop):
                break
    finally:
        await source.close()
    return filed


def test_one_loop_files_an_imap_mailbox_and_a_folder_of_files_alike(make_dovecot, tmp_path):
    imap = make_dovecot()
    for raw in MESSAGES:
        servers.append(imap, "support", "INBOX", raw)
    folder = tmp_path / "mail"
    folder.mkdir()
    for n, raw in enumerate(MESSAGES):
        (folder / f"{n}.eml").write_bytes(raw)
    password = tmp_path / "pw"
    password.write_text("secret")
    session = ImapSession(
        Mailbox(
            name="support",
            host=imap.host,
            port=imap.tls_port,
            tls="tls",
            username="support",
            secret=Secret("file", str(password)),
            ca_file=str(imap.ca_file),
        )
    )
    acknowledged: list[tuple[str, str]] = []
    files = FileSource(
        [folder],
        on_ack=lambda outcome, batch: acknowledged.extend((outcome, m.source) for m in batch),
    )

    from_imap = asyncio.run(drain(session))
    from_files = asyncio.run(drain(files))

    expected = {
        "processed": [MESSAGES[0], MESSAGES[3]],
        "filtered": [MESSAGES[1]],
        "errors": [None],
    }
    assert from_imap == expected
    assert from_files == expected
    # The server holds each message in its outcome's folder; the watched folder is empty.
    held = {
        outcome: servers.fetch_all(imap, "support", session.folder(name))
        for outcome, name in (
            ("processed", "Triage/Processed"),
            ("filtered", "Triage/Filtered"),
            ("errors", "Triage/Errors"),
        )
    }
    assert held == {
        "processed": [MESSAGES[0], MESSAGES[3]],
        "filtered": [MESSAGES[1]],
        "errors": [MESSAGES[2]],
    }
    assert servers.count(imap, "support", "INBOX") == 0
    # The files are where they were, as they were; each was acknowledged once.
    assert [(folder / f"{n}.eml").read_bytes() for n in range(4)] == MESSAGES
    assert sorted(acknowledged) == sorted(
        [
            ("processed", str(folder / "0.eml")),
            ("filtered", str(folder / "1.eml")),
            ("errors", str(folder / "2.eml")),
            ("processed", str(folder / "3.eml")),
        ]
    )
    assert files.acknowledged["processed"] == [0, 3]


def test_a_file_batch_holds_at_most_its_byte_budget_as_an_imap_batch_does(tmp_path):
    """As `test_a_batch_holds_at_most_its_byte_budget_and_leaves_the_rest` for IMAP: the
    budget stops a batch before the message that would pass it, one message always fits,
    and a message over the size limit is taken without its bytes and without counting."""
    sizes = [3_000, 3_000, 20_000, 3_000, 3_000]
    for n, size in enumerate(sizes):
        (tmp_path / f"{n}.eml").write_bytes(human(body="x" * size))

    async def run():
        source = FileSource([tmp_path])
        await source.open()
        handles = await source.unprocessed()
        first = await source.fetch(handles, 10_000, budget=7_000)
        alone = await source.fetch(handles[3:], 10_000, budget=10)
        return first, alone

    (first, left), (alone, rest) = asyncio.run(run())
    assert [(m.handle, m.raw is None) for m in first] == [(0, False), (1, False), (2, True)]
    assert left == [3, 4]
    assert [m.handle for m in alone] == [3] and rest == [4]


def test_a_file_source_acknowledges_each_file_once_and_then_has_nothing_left(tmp_path):
    (tmp_path / "a.eml").write_bytes(human())
    (tmp_path / "b.eml").write_bytes(human(Message_ID="<b@acme.example>"))
    missing = tmp_path / "gone.eml"

    async def run():
        source = FileSource([tmp_path, missing])
        await source.open()
        batch, _ = await source.fetch(await source.unprocessed(), MAX_BYTES)
        await source.ack([m.handle for m in batch if m.raw is not None], "processed")
        return source, batch, await source.unprocessed(), await source.wait(asyncio.Event())

    source, batch, left, more = asyncio.run(run())
    assert [(Path(m.source).name, m.error) for m in batch] == [
        ("a.eml", None),
        ("b.eml", None),
        ("gone.eml", "no such file or folder"),
    ]
    assert left == [2] and more is False
