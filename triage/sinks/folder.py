"""A folder instead of the relay and the receivers: what would be sent, written as files.

`triage replay --acks-dir` writes each acknowledgement as `<ticket>.eml`, and `--sinks-dir`
each sink delivery as `<n>-<sink>-<event>-<ticket>.http`: the request line, the headers and
the body, byte for byte as it would go out (a webhook's signature, made when it is sent, and
a chat webhook's URL, a secret, are shown as placeholders). Nothing is sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from triage.sinks.base import Delivery
from triage.sinks.config import SinkConfig
from triage.sinks.kinds import preview
from triage.store.deliveries import Queued
from triage.store.listings import Acknowledgement


def write(acks: Iterable[Acknowledgement], folder: Path) -> int:
    """Write each acknowledgement to `folder` (created when missing); returns how many."""
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for ack in acks:
        (folder / f"{ack.ticket}.eml").write_text(ack.raw, encoding="utf-8")
        written += 1
    return written


def write_deliveries(queued: Iterable[Queued], sinks: Sequence[SinkConfig], folder: Path) -> int:
    """Write each queued delivery to `folder` as its sink would send it; returns how many."""
    folder.mkdir(parents=True, exist_ok=True)
    by_name = {s.name: s for s in sinks}
    written = 0
    for n, q in enumerate(queued, 1):
        config = by_name.get(q.sink)
        if config is None:  # queued for a sink since removed from the configuration
            continue
        delivery = Delivery(q.delivery_id, q.sink, q.event)
        ticket = q.event.ticket or "none"
        name = f"{n:04d}-{q.sink}-{q.event.type}-{ticket}.http"
        (folder / name).write_bytes(_request(config, delivery))
        written += 1
    return written


def _request(config: SinkConfig, delivery: Delivery) -> bytes:
    shown = preview(config, delivery)
    if config.kind == "email":
        head = f"To: {', '.join(shown['to'])}\nSubject: {shown['subject']}\n\n"
        return (head + shown["body"]).encode("utf-8")
    headers = {"content-type": "application/json", **shown.get("headers", {})}
    if config.kind == "webhook":
        headers["webhook-timestamp"] = "<when sent>"
        body = delivery.event.body()  # the very bytes that are signed and sent
    else:
        body = json.dumps(shown["body"], ensure_ascii=False, separators=(",", ":")).encode()
    head = f"{shown['method']} {shown['url']}\n" + "".join(
        f"{k}: {v}\n" for k, v in headers.items()
    )
    return head.encode("utf-8") + b"\n" + body + b"\n"
