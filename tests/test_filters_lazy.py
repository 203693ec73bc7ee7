"""The filters read bodies only when a body rule can decide, and decide as file order does.

`FilterSet.hits` runs the header rules first and reads the bodies only when a body rule
could change the first hit, the deciding (first strong) rule or the first category.
Every message we hold (fixtures, ../shared/corpus, the labelled set when present) must
come out exactly as evaluating every rule in file order on the complete message says,
with the shipped rules and with rule files reordered, re-weighted and re-categorised.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from triage.config import shipped_rules
from triage.core.filter_rules import CATEGORIES
from triage.core.filters import FilterSet, field_values, our_message_ids
from triage.core.message import read

from .conftest import CORPUS, FIXTURES, build
from .outside import labelled

SHIPPED = FilterSet.from_toml(shipped_rules() / "filters.toml", frozenset({"msp.example"}))


def _messages() -> list[Path]:
    found = sorted(FIXTURES.glob("*.eml"))
    found += sorted(CORPUS.rglob("*.eml")) if CORPUS.is_dir() else []
    held = labelled()
    if held is not None:
        found += sorted(p for p in held.rglob("*.eml") if "tnef" not in p.parts)
    return found


MESSAGES = _messages()


@functools.cache
def _reading(path: Path):
    """One reading per file; `complete` is computed once and reused by every check."""
    return read(path.read_bytes(), keep=None)


def eager(filters: FilterSet, path: Path) -> list[tuple[str, str]]:
    """Every enabled rule in file order on the complete message, up to the first strong hit."""
    email = _reading(path).complete()
    ours = our_message_ids(filters.own_domains, filters.ticket_prefix)
    found = []
    for rule in filters.rules:
        if not rule.enabled:
            continue
        value = rule.matches(field_values(email, rule.field), filters.own_domains, ours)
        if value is not None:
            found.append((rule.id, value.strip()))
            if not rule.weak:
                break
    return found


def lazy(filters: FilterSet, path: Path) -> list[tuple[str, str]]:
    reading = _reading(path)
    return [(h.rule.id, h.value.strip()) for h in filters.hits(reading.head, reading.complete)]


def outcome(filters: FilterSet, hits: list[tuple[str, str]]) -> tuple:
    """What stage one takes from the hits: the first (the reason), the deciding strong rule,
    the first category; and, with no strong rule, every hit (the evidence weighs them all)."""
    by_id = {r.id: r for r in filters.rules}
    if not hits:
        return (None, None, "", ())
    decided = not by_id[hits[-1][0]].weak
    category = next((by_id[i].category for i, _ in hits if by_id[i].category), "")
    return (hits[0], hits[-1] if decided else None, category, () if decided else tuple(hits))


@pytest.mark.parametrize("path", MESSAGES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_rules_decide_as_file_order_does(path):
    assert outcome(SHIPPED, lazy(SHIPPED, path)) == outcome(SHIPPED, eager(SHIPPED, path))


@st.composite
def rule_files(draw):
    """The shipped rules in another order, with other strengths and categories."""
    rules = list(draw(st.permutations(SHIPPED.rules)))
    changed = []
    for rule in rules:
        strength = draw(st.sampled_from(("strong", "weak", rule.strength)))
        category = draw(st.sampled_from(("", *CATEGORIES, rule.category)))
        enabled = draw(st.sampled_from((True, True, True, False)))
        answered = rule.answered_by if strength == "weak" else ()
        changed.append(
            dataclasses.replace(
                rule, strength=strength, category=category, enabled=enabled, answered_by=answered
            )
        )
    return dataclasses.replace(SHIPPED, rules=tuple(changed))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(filters=rule_files())
def test_any_rule_order_decides_as_file_order_does(filters):
    for path in MESSAGES:
        assert outcome(filters, lazy(filters, path)) == outcome(filters, eager(filters, path)), path


def _body_read(raw: bytes) -> tuple[tuple[str, ...], bool, bool]:
    """The shipped rules' hits on `raw`, whether the bodies were asked for, whether decided."""
    reading = read(raw, keep=None)
    asked = []

    def complete():
        asked.append(True)
        return reading.complete()

    hits = SHIPPED.hits(reading.head, complete)
    return tuple(h.rule.id for h in hits), bool(asked), bool(hits) and not hits[-1].rule.weak


def test_the_comparison_covers_header_decided_and_body_read_mail():
    """The set holds both kinds the lazy order treats differently, so the table tests them."""
    decided = [_body_read(path.read_bytes()) for path in MESSAGES]
    decided = [read_body for ids, read_body, strong in decided if strong]
    assert len(MESSAGES) >= 80
    assert decided.count(False) >= 3 and decided.count(True) >= 3, decided  # fixtures alone: 4, 23


DSN = (
    b"From: Mail Delivery System <MAILER-DAEMON@mx.example>\r\n"
    b"To: help@msp.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"
    b"Message-ID: <dsn-1@mx.example>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\nOut of office, and so is your mail.\r\n"
    b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
    b"Reporting-MTA: dns; mx.example\r\n\r\nFinal-Recipient: rfc822; x@y.example\r\n"
    b"Action: failed\r\nStatus: 5.1.1\r\n\r\n--b--\r\n"
)


@pytest.mark.parametrize(
    ("raw", "ids", "body_read"),
    [
        # A weak From rule comes first, a strong header rule decides: the body rule between
        # them could change neither, so the bounce's body is never read.
        (
            DSN,
            ("sow-from-mailer-daemon", "sow-subject-undelivered-mail", "dsn-report"),
            False,
        ),
        # Nothing fires before the body rule: its phrase makes it the first hit (the reason).
        (
            build(
                {
                    "From": "Ann <ann@corp.example>",
                    "Subject": "Away",
                    "Auto-Submitted": "auto-replied",
                },
                "Out of office until Monday.\n",
            ),
            ("sow-body-out-of-office", "auto-submitted"),
            True,
        ),
        # The same auto-reply without the phrase: read, and the header rule decides alone.
        (
            build(
                {
                    "From": "Ann <ann@corp.example>",
                    "Subject": "Away",
                    "Auto-Submitted": "auto-replied",
                },
                "Back on Monday.\n",
            ),
            ("auto-submitted",),
            True,
        ),
        # A person's mail: no strong rule, so every rule runs, bodies included.
        (build({"From": "Ann <ann@corp.example>", "Subject": "Printer down"}), (), True),
    ],
    ids=["bounce-decided-by-headers", "body-rule-first", "body-rule-silent", "person"],
)
def test_bodies_are_read_only_when_a_body_rule_can_decide(raw, ids, body_read):
    assert _body_read(raw)[:2] == (ids, body_read)


@settings(max_examples=300, deadline=None)
@given(st.data(), st.text(max_size=12), st.text(max_size=12))
def test_a_screen_finds_every_value_a_rule_behind_it_fires_on(data, before, after):
    """A field's screen stands for its phrase rules: skipping them when it finds nothing
    must never skip a hit (the begins-with and equals rules included)."""
    screened = [
        (n, rule) for n, rule, _body, _header, field in SHIPPED._active if field is not None
    ]
    assert {rule.field for _, rule in screened} == set(SHIPPED.screens) >= {"from", "subject"}
    _, rule = data.draw(st.sampled_from(screened))
    phrase = data.draw(st.sampled_from(rule.phrases))
    for value in (phrase, phrase + after, before + phrase, before + phrase + after, before):
        if rule.matches((value,), SHIPPED.own_domains) is not None:
            assert SHIPPED.screens[rule.field].search(value), (rule.id, value)


@pytest.mark.parametrize(
    ("headers", "fires"),
    [
        # a person whose display name is an encoded word spelling a robot's mailbox
        ({"From": "=?utf-8?q?MAILER-DAEMON?= <alice@customer.example>", "Subject": "help"}, False),
        # a bounce's subject, encoded, with a typographic apostrophe in the body
        (
            {
                "From": "alice@customer.example",
                "Subject": "=?utf-8?b?VW5kZWxpdmVyZWQgTWFpbCBSZXR1cm5lZCB0byBTZW5kZXI=?=",
            },
            True,
        ),
        # an auto-reply prefix behind white space and capitals, and a lookalike of it
        ({"From": "bob@customer.example", "Subject": "   AUTOMATIC   REPLY: away"}, True),
        ({"From": "bob@customer.example", "Subject": "Automatically replying is broken"}, None),
        # a phrase split between the display name and the address: in neither value
        ({"From": "no <reply@customer.example>", "Subject": "printer"}, False),
    ],
)
def test_screens_decide_as_every_rule_asked_on_mail_that_lies(tmp_path, headers, fires):
    """Encoded words, typographic apostrophes, white space and lookalikes: the screened
    filters give exactly the hits of asking every rule in file order."""
    path = tmp_path / "m.eml"
    path.write_bytes(
        build(
            {"To": "support@msp.example", "Message-ID": "<m1@customer.example>", **headers},
            "Thanks for your message \u2019 we\u2019re out of the office.\n",
        )
    )
    assert lazy(SHIPPED, path) == eager(SHIPPED, path)
    screened = {rule.id for _, rule, _b, _h, field in SHIPPED._active if field is not None}
    if fires is not None:  # None: only that the two agree
        assert bool({rule_id for rule_id, _ in lazy(SHIPPED, path)} & screened) is fires
