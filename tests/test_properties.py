"""Hypothesis: nothing the bytes contain makes the pipeline raise."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from triage.core.pipeline import Action, Facts, analyse, decide

from .conftest import FIXTURES

SEEDS = [p.read_bytes() for p in sorted(FIXTURES.glob("*.eml"))] or [b"From: a@b\r\n\r\nx"]
NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _run(raw: bytes, rules) -> None:
    d = decide(analyse(raw, "hyp", rules), Facts.empty(), rules, NOW)
    assert isinstance(d.action, Action)
    if d.action == Action.QUARANTINED:
        assert d.reason


@SETTINGS
@given(st.binary(max_size=4096))
def test_random_bytes_never_raise(rules, raw):
    _run(raw, rules)


@st.composite
def mutated(draw):
    base = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 12))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        pos = draw(st.integers(0, max(0, len(base) - 1)))
        if op == "flip" and base:
            base[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            base[pos:pos] = draw(
                st.sampled_from(
                    [
                        b"\x00",
                        b"\r",
                        b"=?utf-8?b?",
                        b"--",
                        b"boundary=",
                        b"\n\n",
                        b"\xff\xfe",
                        b"Content-Type: multipart/mixed; boundary=x\n",
                    ]
                )
            )
        elif op == "delete":
            del base[pos : pos + draw(st.integers(1, 64))]
        elif op == "dup":
            base[pos:pos] = base[pos : pos + draw(st.integers(1, 256))]
    return bytes(base)


@SETTINGS
@given(mutated())
def test_mutated_fixtures_never_raise(rules, raw):
    _run(raw, rules)


_NAME = st.text(alphabet="abcXYZ .'-éü", max_size=12)
_LOCAL = st.text(alphabet="abc.+_-19", min_size=1, max_size=10)
_DOMAIN = st.sampled_from(["acme.example", "x.y", "mail.example.co.jp"])


@st.composite
def address_lists(draw):
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        addr = f"{draw(_LOCAL)}@{draw(_DOMAIN)}"
        form = draw(st.sampled_from(["bare", "angle", "named", "quoted"]))
        name = draw(_NAME)
        parts.append(
            {
                "bare": addr,
                "angle": f"<{addr}>",
                "named": f"{name} <{addr}>",
                "quoted": f'"{name}" <{addr}>',
            }[form]
        )
    return draw(st.sampled_from([", ", ",", " , "])).join(parts)


@settings(max_examples=300, deadline=None)
@given(address_lists())
def test_fast_address_parsing_agrees_with_the_stdlib(value):
    from email.utils import getaddresses

    from triage.core.addresses import parse_addresses

    ours = [(" ".join(n.split()), a) for n, a in parse_addresses([value])]
    theirs = [(" ".join(n.split()), a) for n, a in getaddresses([value])]
    assert ours == theirs
