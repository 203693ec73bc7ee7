"""docs/sinks.md says what is true: its config examples read, and its example receiver, run as
written, verifies triage's signatures, refuses a wrong one and drops a repeat."""

from __future__ import annotations

import asyncio
import re
import secrets
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

from tests.conftest import ROOT
from tests.servers import free_port, wait_for_port
from triage.sinks.base import Delivery, Status
from triage.sinks.config import parse_sink, parse_sinks
from triage.sinks.events import TICKET_CREATED, Event
from triage.sinks.webhook import WebhookSink, new_secret

DOC = ROOT / "docs" / "sinks.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_every_config_example_in_the_doc_reads():
    examples = [b for b in blocks("toml") if "[[sink]]" in b]
    assert len(examples) >= 4
    kinds = set()
    for text in examples:
        for sink in parse_sinks(DOC, tomllib.loads(text)["sink"]):
            kinds.add(sink.kind)
    assert kinds == {"webhook", "connectwise", "slack", "teams", "email"}


def receiver_code() -> str:
    text = DOC.read_text(encoding="utf-8")
    after = text.split("<!-- example-receiver -->", 1)[1]
    return re.search(r"```python\n(.*?)```", after, re.S)[1]


def test_the_documented_receiver_verifies_refuses_and_drops_repeats(tmp_path: Path):
    key = new_secret(secrets.token_bytes(32))
    script = tmp_path / "receiver.py"
    script.write_text(receiver_code())
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env={"TRIAGE_WEBHOOK_SECRET": key, "PORT": str(port), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=10)
        event = Event.for_ticket(
            TICKET_CREATED,
            "evt_doc",
            datetime.now(UTC),
            ticket="T-000123",
            subject="Server down",
            priority="P1",
            due=None,
            requester="ceo@acme.example",
        )

        def sink(secret_text: str, file: str) -> WebhookSink:
            (tmp_path / file).write_text(secret_text)
            table = {
                "name": "doc",
                "kind": "webhook",
                "url": f"http://127.0.0.1:{port}/",
                "secret_file": file,
                "events": ["ticket.created"],
                "allow_insecure": True,
            }
            return WebhookSink(parse_sink(tmp_path / "triage.toml", "sink[0]", table))

        async def go():
            first = Delivery.first(event, "doc")
            good = sink(key, "good.secret")
            bad = sink(new_secret(secrets.token_bytes(32)), "other.secret")
            try:
                return [
                    await good.deliver(first),
                    await good.deliver(Delivery(first.id, "doc", event, 2)),
                    await bad.deliver(first),
                ]
            finally:
                await good.aclose()
                await bad.aclose()

        sent, repeat, forged = asyncio.run(go())
    finally:
        proc.terminate()  # this pid only
        out, err = proc.communicate(timeout=10)
    assert (sent.status, sent.code) == (Status.SENT, 204)
    assert (repeat.status, repeat.code) == (Status.SENT, 204)
    assert (forged.status, forged.code) == (Status.FAILED, 401)
    assert out.splitlines() == ["ticket.created T-000123"], err
