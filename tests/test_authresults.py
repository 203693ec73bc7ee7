"""Authentication-Results (RFC 8601): parsed, comments ignored, only our boundary believed."""

from __future__ import annotations

import email

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.core.authresults import (
    AuthResults,
    Result,
    _result,
    _result_general,
    _segments,
    _segments_tokens,
    parse,
    trusted,
    verdict,
)

from .conftest import CORPUS, corpus_rows, needs_corpus

OURS = frozenset({"mx.msp.example"})
MS365 = (
    "spf=pass (sender IP is 192.0.2.7) smtp.mailfrom=acme.example; dkim=pass (signature was"
    " verified) header.d=acme.example;dmarc=pass action=none header.from=acme.example;"
    "compauth=pass reason=100"
)


def test_a_header_is_read_as_a_structure():
    h = parse(
        "mx.google.com; dkim=pass header.i=@acme.example header.s=s1 header.b=abc;"
        " spf=pass (google.com: domain of jane@acme.example designates 192.0.2.1 as permitted"
        " sender) smtp.mailfrom=jane@acme.example; dmarc=pass (p=REJECT sp=REJECT dis=NONE)"
        " header.from=acme.example"
    )
    assert h.authserv_id == "mx.google.com"
    assert [(r.method, r.result) for r in h.results] == [
        ("dkim", "pass"),
        ("spf", "pass"),
        ("dmarc", "pass"),
    ]
    assert h.results[1].get("smtp.mailfrom") == "jane@acme.example"
    assert h.results[2].get("header.from") == "acme.example"


def test_microsoft_365_writes_no_authserv_id_and_properties_without_a_type():
    h = parse(MS365)
    assert h.authserv_id == ""
    assert [(r.method, r.result) for r in h.results] == [
        ("spf", "pass"),
        ("dkim", "pass"),
        ("dmarc", "pass"),
        ("compauth", "pass"),
    ]
    assert h.results[2].get("action") == "none" and h.results[3].get("reason") == "100"


@pytest.mark.parametrize(
    "value",
    [
        "mx.msp.example; none",
        "mx.msp.example 1; none",
        "mx.msp.example",
        "",
        "mx.msp.example; header.i=@acme.example",  # a stray property is no result
        "mx.msp.example; (dmarc=fail) (spf=fail; dkim=fail)",
    ],
)
def test_no_result(value):
    assert parse(value).results == ()


# ------------------------------------------------------------------------ what "authenticated" means

A = "acme.example"


@pytest.mark.parametrize(
    ("headers", "ids", "state"),
    [
        (["mx.msp.example; dmarc=pass header.from=acme.example"], (), "pass"),
        (["mx.msp.example; dmarc=fail header.from=acme.example"], (), "fail"),
        (["mx.msp.example; dmarc=pass"], (), "pass"),
        # DMARC judged another From domain (two From headers, or one decoded differently)
        (["mx.msp.example; dmarc=pass header.from=evil.example"], (), "fail"),
        # no DMARC result: an aligned DKIM signature or SPF-checked envelope sender
        (["mx.msp.example; dkim=pass header.d=acme.example"], (), "pass"),
        (["mx.msp.example; dkim=pass header.i=@mail.acme.example"], (), "pass"),
        (["mx.msp.example; dkim=pass header.d=evil.example"], (), "none"),
        (["mx.msp.example; spf=pass smtp.mailfrom=bounce@acme.example"], (), "pass"),
        (["mx.msp.example; spf=pass smtp.mailfrom=evil.example"], (), "none"),
        (["mx.msp.example; spf=fail smtp.mailfrom=acme.example; dkim=fail"], (), "fail"),
        (["mx.msp.example; spf=fail smtp.mailfrom=acme.example; dkim=none"], (), "none"),
        (["mx.msp.example; dmarc=none header.from=acme.example"], (), "none"),
        ([MS365], (), "pass"),
        ([], (), "none"),
        # comments and quoted strings are not results
        (
            [
                "mx.msp.example; arc=pass (i=1 spf=pass dkim=pass dmarc=fail fromdomain=acme.example);"
                " dmarc=pass header.from=acme.example"
            ],
            (),
            "pass",
        ),
        (["mx.msp.example; dkim=pass (good; dmarc=fail) header.d=acme.example"], (), "pass"),
        (['mx.msp.example; dkim=pass header.b="x;dmarc=fail" header.d=acme.example'], (), "pass"),
        (["mx.msp.example; dkim=pass header.d=acme.example (dmarc=fail"], (), "pass"),
        # the topmost header only, by default: an earlier hop's verdict neither helps nor hurts
        (
            [
                "mx.msp.example; dmarc=pass header.from=acme.example",
                "relay.lists.example; dmarc=fail header.from=acme.example",
            ],
            (),
            "pass",
        ),
        (
            [
                "mx.msp.example; dmarc=none header.from=acme.example",
                "mx.evil.example; dmarc=pass header.from=acme.example",
            ],
            (),
            "none",
        ),
        # authserv_ids: only ours, from the top, up to the first foreign header
        (["mx.evil.example; dmarc=pass header.from=acme.example"], OURS, "none"),
        (["MX.MSP.EXAMPLE; dmarc=pass header.from=acme.example"], OURS, "pass"),
        (
            [
                "mx.msp.example; dkim=pass header.d=evil.example",
                "mx.msp.example; dmarc=pass header.from=acme.example",
            ],
            OURS,
            "pass",  # two milters of our boundary, one header each
        ),
        (
            [
                "mx.msp.example; spf=none smtp.mailfrom=acme.example",
                "relay.example; dkim=none",
                "mx.msp.example; dmarc=pass header.from=acme.example",
            ],
            OURS,
            "none",  # ours, but below a foreign header: written before our boundary
        ),
        (
            [
                "mx.msp.example; dmarc=none header.from=acme.example",
                "mx.msp.example; dmarc=pass header.from=acme.example",
            ],
            OURS,
            "none",  # the topmost header that reports DMARC decides
        ),
        ([MS365], OURS, "none"),  # no authserv-id is not ours
    ],
)
def test_verdict(headers, ids, state):
    assert verdict(tuple(headers), A, frozenset(ids)).state == state


def test_the_verdict_says_why():
    v = verdict(("mx.msp.example; dmarc=fail header.from=acme.example",), A, frozenset())
    assert v.failed and "dmarc=fail" in v.why and "mx.msp.example" in v.why
    v = verdict(("mx.evil.example; dmarc=pass",), A, OURS)
    assert v.state == "none" and "mx.msp.example" in v.why


# ------------------------------------------------------------------------ properties

LOWER = "abcdefghijklmnopqrstuvwxyz"


def _word(first: str, rest: str, size: int) -> st.SearchStrategy[str]:
    return st.builds(str.__add__, st.sampled_from(first), st.text(rest, max_size=size))


KEYWORD = _word(LOWER, LOWER + "0123456789-", 8)
METHOD = st.one_of(st.sampled_from(["dmarc", "dkim", "spf", "arc", "iprev", "auth"]), KEYWORD)
RESULT = st.one_of(
    st.sampled_from(["pass", "fail", "none", "neutral", "softfail", "temperror"]), KEYWORD
)
PTYPE = st.sampled_from(["smtp", "header", "body", "policy"])
TOKEN_VALUE = _word(LOWER + "0123456789@", LOWER + "ABCXYZ0123456789@._+-", 19)
QUOTED_VALUE = st.text(
    st.characters(min_codepoint=32, max_codepoint=126), min_size=0, max_size=20
).filter(lambda v: v.strip() == v and v)  # kept as is, spaces included, within quotes
COMMENT_TEXT = st.lists(
    st.sampled_from(list("abc xyz=;.@\"'") + ["dmarc=fail", "; dkim=fail", "\\)", "\\("]),
    max_size=12,
).map("".join)


@st.composite
def comments(draw) -> str:
    """Nothing, or a comment: any text, semicolons and results included, maybe nested."""
    if not draw(st.booleans()):
        return ""
    inner = draw(COMMENT_TEXT)
    if draw(st.booleans()):
        inner += "(" + draw(COMMENT_TEXT) + ")"
    return "(" + inner + ")"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def headers(draw) -> tuple[str, AuthResults]:
    """A header's text with comments wherever RFC 8601 allows CFWS, and what it says."""
    c = comments()
    authserv_id = draw(_word(LOWER, LOWER + "0123456789.-", 15))
    text = draw(c) + authserv_id + " " + draw(c)
    results = []
    for _ in range(draw(st.integers(0, 4))):
        method, result = draw(METHOD), draw(RESULT)
        text += f";{draw(c)} {method}{draw(c)}={draw(c)}{result}"
        props = []
        for _ in range(draw(st.integers(0, 3))):
            ptype, prop = draw(PTYPE), draw(KEYWORD)
            if draw(st.booleans()):
                value = draw(TOKEN_VALUE)
                written = value
            else:
                value = draw(QUOTED_VALUE)
                written = _quote(value)
            text += (
                f" {draw(c)}{ptype}{draw(c)}.{draw(c)}{prop}{draw(c)}={draw(c)}{written}{draw(c)}"
            )
            props.append((f"{ptype}.{prop}", value))
        results.append(Result(method, result, tuple(props)))
    return text, AuthResults(authserv_id, tuple(results))


@settings(max_examples=250, deadline=None)
@given(headers())
def test_what_is_written_is_read_back_whatever_the_comments_say(case):
    text, expected = case
    assert parse(text) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_parses_without_error_into_keyword_results(text):
    h = parse(text)
    for r in h.results:
        assert r.method and r.result and "=" not in r.method + r.result


@settings(max_examples=150, deadline=None)
@given(headers(), st.lists(st.text(max_size=200), max_size=3))
def test_headers_below_the_topmost_never_change_the_default_verdict(case, lower):
    """The default trusts the topmost header only: anything a sender adds lower is ignored."""
    text, _ = case
    alone = verdict((text,), A, frozenset())
    assert verdict((text, *lower), A, frozenset()) == alone


@settings(max_examples=100, deadline=None)
@given(st.lists(headers(), max_size=3))
def test_with_authserv_ids_a_foreign_header_on_top_is_never_believed(cases):
    values = ("mx.evil.example; dmarc=pass header.from=acme.example", *(t for t, _ in cases))
    assert trusted(values, OURS) == ()
    assert verdict(values, A, OURS).state == "none"


# ------------------------------------------------------------------------ real mail


@needs_corpus
def test_every_header_in_the_real_mail_corpus_is_read():
    """Written by many boundaries (Google, Microsoft, Yahoo, Japanese carriers): each parses,
    names the server that wrote it (Microsoft's aside) and yields at least one result."""
    seen = 0
    for row in corpus_rows():
        msg = email.message_from_bytes((CORPUS / row["file"]).read_bytes())
        for value in msg.get_all("Authentication-Results") or ():
            h = parse(" ".join(str(value).split()))
            seen += 1
            assert h.results, value
            assert h.authserv_id or str(value).lstrip().lower().startswith("spf="), value
    assert seen >= 25


# ------------------------------------------------------------------------ the plain-shape paths

# What headers are made of, so random text often takes each path and its edges.
_PIECES = st.sampled_from(
    [
        "mx.msp.example", "dkim", "spf", "dmarc", "pass", "fail", "=", "==", ".", ";", " ",
        "  ", "\t", "\r\n ", "(", ")", '"', "\\", "header.d", "header.from", "smtp.mailfrom",
        "acme.example", "a@b.example", "/1", "x-y_z", "\u00a0", "\x1c", "é",
    ]
)  # fmt: skip
_TEXTS = st.one_of(st.lists(_PIECES, max_size=30).map("".join), st.text(max_size=120))
_SPACE = st.sampled_from(["", " ", "  ", "\t", "\r\n "])
_WORD = st.sampled_from(
    [
        "",
        "dkim",
        "pass",
        "header",
        "d",
        "acme.example",
        "a@b.example",
        "x-y_z",
        "é",
        '"q;x"',
        "\\",
        "1",
    ]
)


@st.composite
def resinfos(draw) -> str:
    """Text near the shape `method=result name.sub=value ...`, a piece or two off at times."""
    space, word = lambda: draw(_SPACE), lambda: draw(_WORD)
    parts = [space(), word(), space(), draw(st.sampled_from(["", "/1", "/ 1 "])), "="]
    parts += [space(), word()]
    for _ in range(draw(st.integers(0, 4))):
        parts += [space(), word(), draw(st.sampled_from(["", ".", " . "])), word(), space()]
        parts += [draw(st.sampled_from(["=", "", "=="])), space(), word()]
    return "".join([*parts, space()])


@settings(max_examples=600, deadline=None)
@given(_TEXTS)
def test_comments_and_semicolons_split_as_the_token_reader_splits_them(text):
    assert _segments(text) == _segments_tokens(text)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(_TEXTS, resinfos()))
def test_a_result_in_the_plain_shape_reads_as_the_general_reader_reads_it(text):
    assert _result(text) == _result_general(text)


@needs_corpus
def test_real_headers_read_the_same_by_either_path():
    seen = 0
    for row in corpus_rows():
        msg = email.message_from_bytes((CORPUS / row["file"]).read_bytes())
        for value in msg.get_all("Authentication-Results") or ():
            text = str(value)
            assert _segments(text) == _segments_tokens(text), text
            for segment in _segments_tokens(text):
                assert _result(segment) == _result_general(segment), segment
                seen += 1
    assert seen >= 50


@pytest.mark.parametrize(
    "segment",
    [
        " dkim=pass header.d=acme.example",
        " dkim=pass header= d=acme.example",  # a value may follow "=" after a space
        " dkim=pass header.d =acme.example",
        " dkim=pass header . d=acme.example",
        ' dkim=pass header.b="abc" header.d=acme.example',
        " dkim=pass header.b=a\\b",
        " dkim = pass",
        " dkim/1=pass smtp.mailfrom=a@b.example ",
        " dkim=pass.x header.d=acme.example",
        " dkim=pass header.d=a=b",
        " dkim=pass header.d.x=acme.example",
        " dkim=pass junk header.d=acme.example",
        " dkim=pass\r\n\theader.d=acme.example",
        " =pass",
        "",
    ],
)
def test_edges_of_the_plain_shape_read_as_the_general_reader_reads_them(segment):
    assert _result(segment) == _result_general(segment)
