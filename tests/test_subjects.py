"""Reply and forward prefixes in the languages mail clients write them."""

from __future__ import annotations

import time

import pytest

from triage.core.subjects import Subject, bare, is_forward


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        (
            "AW: Drucker druckt nur leere Seiten",
            "Drucker druckt nur leere Seiten",
        ),  # German Outlook
        ("WG: AW: Drucker", "Drucker"),
        ("Re: AW: Fwd: Printer", "Printer"),  # stacked, three languages
        ("SV: Skrivaren", "Skrivaren"),  # Swedish, Danish, Norwegian
        ("VS: Tulostin", "Tulostin"),  # Finnish reply, Danish forward
        ("TR : Imprimante", "Imprimante"),  # French, with the space French typography puts
        ("RE : TR : Imprimante", "Imprimante"),
        ("RIF: Stampante", "Stampante"),  # Italian
        ("R: I: Stampante", "Stampante"),  # Italian reply of a forward
        ("RV: Impresora", "Impresora"),  # Spanish forward
        ("Antw: Doorst: Printer", "Printer"),  # Dutch
        ("Odp: PD: Drukarka", "Drukarka"),  # Polish
        ("Vá: Nyomtató", "Nyomtató"),  # Hungarian
        ("Ynt: Yazıcı", "Yazıcı"),  # Turkish
        ("返信: VPNに接続できません", "VPNに接続できません"),  # Japanese
        ("ＲＥ：VPNに接続できません", "VPNに接続できません"),  # full-width, from a Japanese IME
        ("回复：打印机无法使用", "打印机无法使用"),  # Chinese, full-width colon
        ("转发: 回复: 打印机", "打印机"),
        ("답장: 프린터", "프린터"),  # Korean
        ("Re[2]: Printer", "Printer"),  # counters some clients add
        ("RE (3): Printer", "Printer"),
        ("re:re:Printer", "Printer"),  # no spaces at all
        ("Fwd: ", ""),
    ],
)
def test_prefixes_of_many_languages_are_stripped(subject, expected):
    assert bare(subject) == expected


@pytest.mark.parametrize(
    "subject",
    [
        "Re-install the printer driver",  # a word that starts like a prefix
        "Rework of the VPN",
        "Reply needed: VPN down",
        "Printer (Rif: 123) is jammed",  # a prefix word inside the text
        "Irrelevant: the printer",
        "AWS: bucket unreachable",
        "Was: printer",
        "Request 123: printer",
        "R2D2: printer",
    ],
)
def test_words_that_merely_start_like_a_prefix_are_kept(subject):
    assert bare(subject) == subject


@pytest.mark.parametrize(
    ("subject", "forward", "reply"),
    [
        ("Fwd: Printer", True, False),
        ("WG: Drucker", True, False),
        ("TR: Imprimante", True, False),
        ("RV: Impresora", True, False),
        ("Doorst: Printer", True, False),
        ("I: Stampante", True, False),
        ("转发: 打印机", True, False),
        ("転送: VPN", True, False),
        ("WG: AW: Drucker", True, False),  # a forward of a reply
        ("AW: WG: Drucker", False, True),  # a reply to a forward
        ("Re: Printer", False, True),
        ("Printer", False, False),
    ],
)
def test_the_outermost_prefix_says_reply_or_forward(subject, forward, reply):
    parsed = Subject.parse(subject)
    assert (parsed.is_forward, parsed.is_reply, is_forward(subject)) == (forward, reply, forward)


def test_the_prefixes_are_kept_in_order_as_written():
    assert Subject.parse("Re: AW: Fwd: x").prefixes == ("Re", "AW", "Fwd")


def test_a_huge_stack_of_prefixes_stays_cheap():
    subject = "Re: " * 200_000 + "Printer"
    started = time.perf_counter()
    bare(subject)
    assert time.perf_counter() - started < 0.1
