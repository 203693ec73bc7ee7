"""The filter rules: loading, validation errors, matching semantics."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from triage.config import shipped_rules
from triage.filters import FilterSet, RuleError
from triage.message import Email

from .conftest import SEEDS, build, human, needs_seeds

SHIPPED = FilterSet.from_toml(shipped_rules() / "filters.toml")


def hit(raw: bytes) -> str | None:
    h = SHIPPED.first_match(Email.from_bytes(raw))
    return h.rule.id if h else None


@needs_seeds
def test_every_criterion_of_the_sow_section_10_is_a_rule_verbatim():
    lines = [
        " ".join(line.split())  # the seed has no-break spaces
        for line in (SEEDS / "connectwise-helpdesk-sow.txt")
        .read_text(encoding="utf-8")
        .splitlines()
    ]
    start = [n for n, line in enumerate(lines) if line == "10. Email Spam Filter Information"][-1]
    end = lines.index("11. Revision History", start)
    section = [line for line in lines[start:end] if line]
    criteria = []
    for i, line in enumerate(section):
        found = re.match(r"^(From|Subject|Body) (begins with|contains):$", line)
        if found:
            criteria.append(
                (found.group(1).lower(), found.group(2).replace(" ", "_"), section[i + 1])
            )
    assert len(criteria) == 21  # the SOW lists 21 criteria
    sow = [r for r in SHIPPED.rules if r.id.startswith("sow-")]
    raw_phrases = re.findall(
        r'^phrase = "(.*)"$', (shipped_rules() / "filters.toml").read_text(encoding="utf-8"), re.M
    )
    assert [(r.field, r.test) for r in sow] == [(f, t) for f, t, _ in criteria]
    for _field, _test, phrase in criteria:
        assert phrase in raw_phrases, f"{phrase!r} is not transcribed verbatim"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"From": "Postmaster@mx.example", "Subject": "hi"}, "sow-from-postmaster"),
        (
            {"From": "Security <E-MAIL SECURITY TEAM@corp.example>", "Subject": "hi"},
            "sow-from-email-security-team",
        ),
        (
            {"From": "a@b.example", "Subject": "Your message couldn't be delivered"},
            "sow-subject-couldnt-be-delivered",
        ),
        (
            {"From": "a@b.example", "Subject": "YOUR MESSAGE COULDN’T BE DELIVERED"},
            "sow-subject-couldnt-be-delivered",
        ),
        ({"From": "a@b.example", "Subject": "Re: out   of   office"}, "sow-subject-out-of-office"),
    ],
)
def test_documented_rules_ignore_case_apostrophe_style_and_spacing(headers, expected):
    assert hit(build(headers)) == expected


def test_from_matches_display_name_and_address():
    assert (
        hit(build({"From": "Jane <jane@corp.example>", "Subject": "x", "Message-ID": "<1@x>"}))
        is None
    )
    assert (
        hit(build({"From": '"E-mail Security Team" <sec@corp.example>', "Subject": "x"}))
        == "sow-from-email-security-team"
    )


def test_auto_submitted_no_is_a_human_message():
    assert hit(human(Auto_Submitted="no")) is None
    assert hit(human(Auto_Submitted="No; comment")) is None
    assert hit(human(Auto_Submitted="auto-replied")) == "auto-submitted"
    assert hit(human(Auto_Submitted="auto-generated")) == "auto-submitted"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"Precedence": "bulk"}, "precedence-bulk"),
        ({"Precedence": "first-class"}, None),
        ({"List-Id": "<users.lists.example>"}, "list-id"),
        ({"List-Unsubscribe": "<mailto:u@lists.example>"}, "list-unsubscribe"),
        ({"X-Loop": "helpdesk@other.example"}, "x-loop"),
        ({"X-Autoreply": "yes"}, "x-autoreply"),
        ({"X-Autorespond": "yes"}, "x-autorespond"),
        ({"Return-Path": "<>"}, "null-return-path"),
        ({"Return-Path": "<jane@acme.example>"}, None),
        ({"Return-Path": "<www-data@web1.acme.example>"}, "envelope-system-sender"),
        ({"X-Failed-Recipients": "x@y.example"}, "x-failed-recipients"),
    ],
)
def test_structural_header_rules(extra, expected):
    assert hit(human(**{k.replace("-", "_"): v for k, v in extra.items()})) == expected


def test_own_message_id_is_the_shape_of_our_acknowledgements_not_the_whole_domain():
    assert hit(human(Message_ID="<T-000001.0123456789abcdef@triage.invalid>")) == "own-message-id"
    # A reply that merely references our message is a customer's answer, not our own mail.
    assert hit(human(In_Reply_To="<T-000001.0123456789abcdef@triage.invalid>")) is None
    # People in our own domain write Message-IDs in it too (Thunderbird, Exchange, Apple Mail).
    assert hit(human(Message_ID="<8d2e5b71-3c4f@triage.invalid>")) is None
    assert hit(human(Message_ID="<T-000001.0123456789abcdef@elsewhere.example>")) is None


def test_bounce_subject_rule_spares_a_human_asking_about_delivery():
    assert hit(human(Subject="Mail delivery failing for all users since this morning")) is None
    assert hit(human(Subject="Undeliverable: quarterly report")) == "subject-bounce"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "filters.toml"
    path.write_text(text, encoding="utf-8")
    return path


RULE = (
    '[[rule]]\nid = "x"\nfield = "subject"\ntest = "contains"\nphrase = "spam"\nsource = "test"\n'
)


def test_operator_can_add_and_disable_rules(tmp_path):
    fs = FilterSet.from_toml(_write(tmp_path, RULE))
    assert fs.first_match(Email.from_bytes(human(Subject="cheap SPAM here"))).rule.id == "x"
    fs = FilterSet.from_toml(_write(tmp_path, RULE + "enabled = false\n"))
    assert fs.first_match(Email.from_bytes(human(Subject="cheap SPAM here"))) is None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            RULE.replace('field = "subject"', 'field = "subjet"'),
            ":3: rule 'x': field 'subjet' is not known",
        ),
        (RULE.replace('test = "contains"', 'test = "has"'), "test 'has' is not known"),
        (RULE.replace('phrase = "spam"\n', ""), "needs a 'phrase'"),
        (RULE + RULE, "rule id 'x' is used twice (first at line 1)"),
        (RULE.replace('source = "test"\n', ""), "does not name its source"),
        (RULE + "enabled = 'no'\n", ":7: rule 'x': 'enabled' must be true or false"),
        (RULE + "colour = 1\n", "unknown key(s) ['colour']"),
        ("[[rule]\nid = 1", "not valid TOML"),
        (
            RULE.replace('test = "contains"', 'test = "matches"').replace('"spam"', '"(unclosed"'),
            "not a valid regular expression",
        ),
    ],
)
def test_bad_rule_file_names_file_line_and_fix(tmp_path, text, needle):
    path = _write(tmp_path, text)
    with pytest.raises(RuleError) as exc:
        FilterSet.from_toml(path)
    message = str(exc.value)
    assert str(path) in message and needle in message and "fix:" in message
