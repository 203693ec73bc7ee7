"""Every key the configuration accepts is documented in docs/configuration.md, in its section.

Walks the schema (`known_keys()`: the SCHEMA tables, queues, mailboxes of both kinds, the
relay, the daemon; and every `[[sink]]` kind's keys) and looks for each key, in backticks,
in the part of the page under its section's heading (`## [mailbox]` ...), or as
`section.key` anywhere. The failure names every key that is missing.
"""

from __future__ import annotations

import re

from tests.conftest import ROOT
from triage.config import known_keys
from triage.sinks.config import sink_keys

PAGE = ROOT / "docs" / "configuration.md"
_HEADING = re.compile(r"^## (.*)$", re.MULTILINE)
_SECTION = re.compile(r"`\[\[?([a-z_]+)\]\]?`")


def sections(text: str) -> dict[str, str]:
    """section name -> the text under every `## ` heading that names it in backticks."""
    out: dict[str, str] = {}
    heads = list(_HEADING.finditer(text))
    for n, head in enumerate(heads):
        end = heads[n + 1].start() if n + 1 < len(heads) else len(text)
        for name in _SECTION.findall(head.group(1)):
            out[name] = out.get(name, "") + text[head.end() : end]
    return out


def all_keys() -> set[str]:
    return set(known_keys()) | {f"sink.{key}" for key in sink_keys()}


def test_every_key_the_schema_accepts_is_documented():
    text = PAGE.read_text(encoding="utf-8")
    parts = sections(text)
    missing = []
    for dotted in sorted(all_keys()):
        section, key = dotted.split(".", 1)
        if f"`{dotted}`" in text or f"`{key}`" in parts.get(section, ""):
            continue
        missing.append(dotted)
    assert not missing, f"docs/configuration.md documents no {missing}: add a row to its section"


def test_the_walk_sees_every_section_and_kind():
    keys = all_keys()
    for dotted in (
        "identity.support_address",
        "mailbox.tenant_id",  # a Graph mailbox's
        "smtp.mailbox",  # Graph sending's
        "daemon.metrics_listen",
        "sink.priority_map",  # ConnectWise's
        "sink.to",  # mail to on-call
        "sink.url_file",  # a chat webhook's URL from a file
    ):
        assert dotted in keys, dotted
    assert set(sections(PAGE.read_text(encoding="utf-8"))) >= {s.split(".")[0] for s in keys}


def test_every_template_variable_is_documented_and_no_other():
    from triage.core.templates import FIELDS

    text = (ROOT / "docs" / "templates.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `\$([a-z_]+)` \|", text, re.MULTILINE))
    assert rows == set(FIELDS), f"docs/templates.md's table: {sorted(rows ^ set(FIELDS))}"


def test_the_documented_extra_words_are_accepted_and_sent(tmp_path):
    """The page's way to add other words (opening hours): written into a copy's ack.txt."""
    import shutil

    from triage.config import shipped_rules
    from triage.core.templates import FIELDS, Templates

    text = (ROOT / "docs" / "templates.md").read_text(encoding="utf-8")
    signature = re.search(r"```text\n(.*?)```", text, re.DOTALL).group(1)
    folder = tmp_path / "templates"
    shutil.copytree(shipped_rules() / "templates", folder)
    ack = folder / "ack.txt"
    ack.write_text(ack.read_text(encoding="utf-8") + "\n" + signature, encoding="utf-8")
    values = {name: "" for name in FIELDS}
    values |= {name: name.upper() for name in ("ticket", "subject", "priority", "meaning")}
    values |= {"response": "R", "due": "D", "requester_name": "Jane", "support_address": "s@x"}
    sent, _markup = Templates.load(folder).render("ack", values)
    assert sent.endswith(signature) and "08:00 to 18:00 UK time" in sent
