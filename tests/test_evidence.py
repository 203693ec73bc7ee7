"""Weak rules weighed against the signs of a person: nobody's mail is dropped silently.

Each case is one message and one expected outcome (ticket, review or filtered), decided by
the whole pipeline against an in-memory store, with our domain set to msp.example.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from triage.config import Config
from triage.core.contacts import Contact, Directory
from triage.core.evidence import Vocabulary
from triage.core.filters import FilterSet, RuleError
from triage.core.pipeline import Action, Facts, Rules, analyse, decide
from triage.core.replies import AckIds, facts_for, render
from triage.engine.batch import run_batch
from triage.engine.explain import decide_against
from triage.errors import ConfigError
from triage.store.sqlite import Store

from .conftest import FIXTURES, ROOT, build

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
CONFIG = replace(
    Config(), own_domains=frozenset({"msp.example"}), support_address="support@msp.example"
)
RULES = Rules.load(CONFIG)


def decided(raw: bytes, rules: Rules = RULES, store: Store | None = None):
    """The decision against what `store` holds; none given: against an empty past."""
    analysis = analyse(raw, "test.eml", rules)
    if store is None:
        return decide(analysis, Facts.empty(), rules, NOW)
    return decide_against(analysis, rules, store, NOW)


def thunderbird_forward_by_agent() -> bytes:
    return build(
        {
            "Message-ID": "<8d2e5b71-3c4f-4a9e-b6d0-2f7a1c9e4b83@msp.example>",
            "Date": "Thu, 05 Feb 2026 08:41:15 +0000",
            "User-Agent": "Mozilla Thunderbird",
            "Subject": "Fwd: VPN drops every ten minutes since yesterday",
            "To": "support@msp.example",
            "From": "Dana Okafor <dana.okafor@msp.example>",
        },
        "Customer called about this too.\n\nDana\n\n\n-------- Forwarded Message --------\n"
        "Subject: \tVPN drops every ten minutes\nDate: \tWed, 4 Feb 2026 17:52:03 +0100\n"
        "From: \tPriya Natarajan <priya@contoso-legal.example>\nTo: \tDana <dana.okafor@msp.example>\n\n"
        "Hi Dana,\n\nthe VPN disconnects every ten minutes.\n\nThanks,\nPriya\n",
    )


def colleague_request() -> bytes:
    return build(
        {
            "From": "Sam Lee <sam.lee@msp.example>",
            "To": "support@msp.example",
            "Subject": "Docking station no longer charges the laptop",
            "Date": "Thu, 5 Feb 2026 09:03:41 +0000",
            "Message-ID": "<6F1C2B3A4D5E4F60A7B8C9D0E1F2A3B4@msp.example>",
            "X-Mailer": "Microsoft Outlook 16.0",
        },
        "Hi all,\n\nthe docking station at my desk stopped charging my laptop.\n\nThanks,\nSam\n",
    )


def reinjected_forward(envelope: str = "root@mailhost.northbridge-it.example") -> bytes:
    return build(
        {
            "Return-Path": f"<{envelope}>",
            "From": "Marta Kowalska <marta.kowalska.law@gmail.com>",
            "Date": "Thu, 5 Feb 2026 11:19:51 +0100",
            "Message-ID": "<CAB7xQ2mVw9P0yLr3nTz5Ke8sHd4uJf1aG6c@mail.gmail.com>",
            "Subject": "Shared drive asks for my password again and again",
            "To": "helpdesk@northbridge-it.example",
        },
        "Good morning,\n\nthe shared drive asks for my password every few minutes.\n\n"
        "Best regards,\nMarta Kowalska\n",
    )


def test_a_technicians_thunderbird_forward_in_our_domain_is_a_ticket_for_the_customer():
    d = decided(thunderbird_forward_by_agent())
    assert (d.action, d.reason) == (Action.TICKET, None)
    assert (d.requester, d.forwarded_by) == (
        "priya@contoso-legal.example",
        "dana.okafor@msp.example",
    )


def test_a_colleagues_own_request_from_our_domain_is_a_ticket():
    d = decided(colleague_request())
    assert (d.action, d.reason, d.requester) == (Action.TICKET, None, "sam.lee@msp.example")
    assert d.due is not None


def test_a_reinjected_forward_with_a_root_envelope_is_a_ticket_and_says_why():
    d = decided(reinjected_forward())
    assert (d.action, d.reason, d.requester) == (
        Action.TICKET,
        None,
        "marta.kowalska.law@gmail.com",
    )
    envelope = next(s for s in d.evidence if s.name == "rule:envelope-system-sender")
    assert "a forwarder rewrote it" in envelope.answered
    assert any("set aside" in r for r in d.reasons)


def test_a_cron_job_mailing_as_root_is_still_filtered():
    raw = build(
        {
            "Return-Path": "<root@backup01.acme.example>",
            "From": "root@backup01.acme.example",
            "To": "support@msp.example",
            "Subject": "Cron <root@backup01> /usr/local/bin/nightly-backup",
            "Message-ID": "<20260305020001.1F2E3D@backup01.acme.example>",
            "Date": "Thu, 5 Mar 2026 02:00:01 +0000",
        },
        "rsync: connection unexpectedly closed (0 bytes received so far)\n",
    )
    d = decided(raw)
    assert (d.action, d.reason) == (Action.FILTERED, "envelope-system-sender")
    # the envelope is not set aside, and a strong rule on the cron subject decides anyway
    assert d.evidence == () and "decided by the strong rule cron-output" in d.reasons[0]


def test_an_info_address_small_business_first_mail_goes_to_review_with_both_sides():
    d = decided((FIXTURES / "38-sow-from-info-small-business.eml").read_bytes())
    assert (d.action, d.reason, d.ticket, d.auto_reply) == (
        Action.REVIEW,
        "sow-from-info",
        None,
        False,
    )
    sides = {(s.side, s.name) for s in d.evidence}
    assert sides == {
        ("machine", "rule:sow-from-info"),
        ("person", "mail-client"),
        ("person", "greeting"),
        ("person", "signature"),
    }


def test_an_info_address_newsletter_is_still_filtered():
    d = decided((FIXTURES / "66-sow-from-info-newsletter.eml").read_bytes())
    assert (d.action, d.reason) == (Action.FILTERED, "sow-from-info")
    assert "bulk-wording" in {s.name for s in d.evidence}


def test_strong_rules_still_filter_outright_whatever_the_person_signs():
    raw = (FIXTURES / "38-sow-from-info-small-business.eml").read_bytes()
    d = decided(b"Auto-Submitted: auto-replied\r\n" + raw)
    assert (d.action, d.reason, d.evidence) == (Action.FILTERED, "sow-from-info", ())
    d = decided(b"List-Unsubscribe: <mailto:u@x.example>\r\n" + raw)
    assert d.action == Action.FILTERED


def test_a_known_contact_is_decisive_for_review():
    raw = build(
        {
            "From": "Office <info@delgado-bakery.example>",
            "To": "support@msp.example",
            "Subject": "till",
            "Message-ID": "<t1@delgado-bakery.example>",
        },
        "till is broken\n",
    )
    assert decided(raw).action == Action.FILTERED  # one weak rule, no sign of a person
    rules = replace(
        RULES,
        directory=Directory.build(
            (Contact("info@delgado-bakery.example", "Rosa Delgado", "Delgado Bakery"),)
        ),
    )
    d = decided(raw, rules)
    assert d.action == Action.REVIEW
    assert [s.name for s in d.evidence if s.decisive] == ["known-contact"]


def test_a_reply_into_one_of_our_tickets_is_decisive_for_review(store):
    first = build(
        {
            "From": "Jane <jane@acme.example>",
            "To": "support@msp.example",
            "Cc": "Front desk <info@acme.example>",  # on the ticket: may add to it
            "Subject": "Printer",
            "Message-ID": "<p1@acme.example>",
        },
        "Hello,\nthe printer is jammed.\nJane\n",
    )
    (ticket,) = run_batch(store, RULES, [analyse(first, "1.eml", RULES)], NOW)
    reply = build(
        {
            "From": "Front desk <info@acme.example>",
            "To": "support@msp.example",
            "Subject": "Re: Printer",
            "Message-ID": "<p2@acme.example>",
            "In-Reply-To": "<p1@acme.example>",
        },
        "still jammed\n",
    )
    d = decided(reply, store=store)
    assert d.action == Action.REVIEW
    assert [s.detail for s in d.evidence if s.decisive] == [f"names {ticket.ticket}"]


def test_our_own_acknowledgement_coming_back_is_filtered_by_its_message_id_shape():
    """Our acknowledgement, forwarded back by a system that dropped its automation headers."""
    first = decided(colleague_request().replace(b"sam.lee@msp.example", b"jo@acme.example"))
    ack = render(
        facts_for(first.email, replace(first, ticket="T-000007"), CONFIG),
        RULES.templates,
        CONFIG,
        NOW,
        AckIds("0123456789abcdef", "00" * 12),
    )
    stripped = b"".join(
        line
        for line in ack.raw.splitlines(keepends=True)
        if not line.startswith((b"Auto-Submitted", b"Precedence", b"X-Auto-Response"))
    )
    d = decided(stripped)
    assert (d.action, d.reason) == (Action.FILTERED, "own-message-id")
    assert (
        decided((FIXTURES / "58-own-message-id-loop.eml").read_bytes(), Rules.load(Config())).reason
        == "own-message-id"
    )


def test_any_message_id_in_our_outbox_coming_back_is_filtered(store):
    """The outbox is asked by index: a digest or alert we sent, forwarded back to us."""
    store.conn.execute(
        "INSERT INTO outbox (ticket_id, to_addr, subject, message_id, raw, status, attempts, created_at)"
        " VALUES (NULL, 'ops@msp.example', 'digest', '<review-digest.20260310.1a2b@msp.example>',"
        " '', 'sent', 1, '2026-03-10T08:00:00Z')"
    )
    raw = build(
        {
            "From": "Ops <ops@msp.example>",
            "To": "support@msp.example",
            "Subject": "triage: 1 message waits for review",
            "Message-ID": "<review-digest.20260310.1a2b@msp.example>",
        },
        "Hello,\nsee below.\nOps\n",
    )
    d = decided(raw, store=store)
    assert (d.action, d.reason) == (Action.FILTERED, "own-message-id")
    # by index: tests/test_facts.py reads the plan of the one query that answers it
    d = decided(raw, store=Store(None))  # the same mail, not in the outbox: a person's
    assert d.action == Action.TICKET


def test_disabling_the_rule_disables_the_outbox_check_too(tmp_path):
    text = (ROOT / "rules" / "filters.toml").read_text(encoding="utf-8")
    text = text.replace('test = "sent_by_us"\n', 'test = "sent_by_us"\nenabled = false\n')
    (tmp_path / "filters.toml").write_text(text, encoding="utf-8")
    filters = FilterSet.from_toml(tmp_path / "filters.toml", CONFIG.own_domains)
    assert filters.sent_by_us is None
    assert RULES.filters.sent_by_us is not None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[review]\nneeds = 0\n", "[review.needs] 0 is not a whole number 1-5"),
        ('[person]\ngreetings = "hi"\n', "[person.greetings] must be a list of non-empty strings"),
        ('[person]\ncolour = ["x"]\n', "[person.colour] is not a known key"),
        ("[scores]\nx = 1\n", "[scores] is not a known table"),
        (
            '[verdict]\ncategories = ["spamm"]\n',
            "[verdict.categories] ['spamm'] is not a category of rules/filters.toml",
        ),
        ('[person]\nquote_attributions = [""]\n', "[person.quote_attributions] must be a list"),
    ],
)
def test_a_bad_evidence_file_names_file_key_and_fix(tmp_path, text, needle):
    path = tmp_path / "evidence.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        Vocabulary.from_toml(path)
    assert str(path) in str(exc.value) and needle in str(exc.value) and "fix:" in str(exc.value)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ('strength = "medium"\n', "strength 'medium' is not known"),
        ('answered_by = ["envelope-rewritten"]\n', "only a weak rule can be answered"),
        (
            'strength = "weak"\nanswered_by = ["luck"]\n',
            "answered_by ['luck'] names an unknown fact",
        ),
    ],
)
def test_rule_strength_is_validated(tmp_path, extra, needle):
    path = tmp_path / "filters.toml"
    path.write_text(
        '[[rule]]\nid = "x"\nfield = "subject"\ntest = "contains"\nphrase = "spam"\n'
        f'source = "test"\n{extra}',
        encoding="utf-8",
    )
    with pytest.raises(RuleError) as exc:
        FilterSet.from_toml(path)
    assert needle in str(exc.value) and "fix:" in str(exc.value)


def test_every_shipped_rule_says_strong_or_weak_and_structural_ones_are_strong():
    weak = {r.id for r in RULES.filters.rules if r.weak}
    assert {r.id for r in RULES.filters.rules if r.id.startswith("sow-")} <= weak
    for structural in (
        "auto-submitted",
        "dsn-report",
        "dsn-part",
        "list-unsubscribe",
        "own-message-id",
    ):
        assert structural not in weak


def test_needs_is_honoured(tmp_path):
    """Raising `needs` above what the bakery's mail shows sends it back to filtered."""
    rules_dir = tmp_path / "rules"
    import shutil

    shutil.copytree(ROOT / "rules", rules_dir)
    path = rules_dir / "evidence.toml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("needs = 2", "needs = 4"), encoding="utf-8"
    )
    rules = Rules.load(replace(CONFIG, rules_dir=Path(rules_dir)))
    d = decided((FIXTURES / "38-sow-from-info-small-business.eml").read_bytes(), rules)
    assert d.action == Action.FILTERED


def shop(
    body: str = "the till prints blank receipts since this morning.\n\nThanks,\nAnna\n",
    **headers: str,
) -> bytes:
    base = {
        "From": "Anna Berg <info@berg-florist.example>",
        "To": "support@msp.example",
        "Subject": "Till prints blank receipts",
        "Message-ID": "<a1b2c3@berg-florist.example>",
    }
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    return build({k: v for k, v in base.items() if v}, body)


@pytest.mark.parametrize(
    ("raw", "action", "signal"),
    [
        (shop("Hi,\n" + "the till is broken.\n\nThanks,\nAnna\n"), Action.REVIEW, "greeting"),
        (shop(), Action.FILTERED, "signature"),  # one sign of a person: not enough
        (shop(User_Agent="Mozilla Thunderbird"), Action.REVIEW, "mail-client"),
        (shop(Message_ID="<CAB7xQ2m@mail.gmail.com>"), Action.REVIEW, "mail-client"),
        (
            shop("Dear customer,\nthe till is broken.\n\nThanks,\nAnna\n"),
            Action.FILTERED,
            "signature",
        ),
        (
            shop(User_Agent="Mozilla Thunderbird", Feedback_ID="a:b:c"),
            Action.FILTERED,
            "automation-headers",
        ),
        (shop(X_Mailer="PHPMailer 6.9.1"), Action.FILTERED, "mailer-software"),
        (
            shop("Hi,\nnew spring bouquets!\nTo unsubscribe click here.\nThanks,\nAnna\n"),
            Action.FILTERED,
            "bulk-wording",
        ),
        (
            shop("Hi,\nI am out of the office until Monday.\n\nThanks,\nAnna\n"),
            Action.FILTERED,
            "auto-reply-wording",
        ),
    ],
    ids=[
        "greeting-and-signature",
        "signature-alone",
        "mail-client",
        "webmail-message-id",
        "generic-greeting",
        "automation-header",
        "mailer-software",
        "bulk-wording",
        "auto-reply-wording",
    ],
)
def test_each_listed_sign_has_its_effect(raw, action, signal):
    d = decided(raw)
    assert d.action == action, d.reasons
    assert signal in {s.name for s in d.evidence}


def test_a_release_that_lost_the_race_makes_no_second_ticket(store, monkeypatch):
    from triage.engine import review

    raw = shop(User_Agent="Mozilla Thunderbird")
    run_batch(store, RULES, [analyse(raw, "1.eml", RULES)], NOW, [raw])
    stale = review.find(store, "1")
    assert review.release(store, RULES, "1", NOW).ticket == "T-000001"
    store.save_review(raw, stale.sha256)  # the loser read the row and the bytes before the winner
    monkeypatch.setattr(review, "find", lambda _store, _key: stale)
    with pytest.raises(review.ReviewError, match="released meanwhile"):
        review.release(store, RULES, "1", NOW)
    assert store.conn.execute("SELECT COUNT(*) FROM tickets").fetchone()[0] == 1


# -- the rules for announcements and scripted senders, weighed like every weak rule --------


def web_form(body: str, **headers: str) -> bytes:
    """A request typed into a support form on a website built on classic ASP (CDO)."""
    base = {
        "From": '"Maria Oyelaran" <maria.oyelaran@kestrel-dental.example>',
        "To": "<support@msp.example>",
        "Subject": "Website support form: laptop will not join the office Wi-Fi",
        "Date": "Tue, 10 Mar 2026 09:41:26 +0000",
        "Message-ID": "<0A7F3C2E91B64D5A8E2C7B19F0D4E6A1@web02.msp.example>",
        "X-Mailer": "Microsoft CDO for Windows 2000",
        "Content-Class": "urn:content-classes:message",
    }
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    return build(base, body)


def test_a_person_writing_through_a_scripted_web_form_goes_to_review():
    d = decided(
        web_form(
            "Hello,\n\nsince the update yesterday the reception laptop no longer joins the\n"
            "office Wi-Fi. Could someone look at it today?\n\nKind regards,\nMaria Oyelaran\n"
        )
    )
    assert (d.action, d.reason, d.ticket) == (Action.REVIEW, "scripted-sender", None)
    assert {s.name for s in d.evidence} == {"rule:scripted-sender", "greeting", "signature"}


def test_a_scripted_job_report_is_filtered_with_its_category():
    d = decided(
        web_form(
            "Export job ERP_NIGHTLY completed at 02:15.\nRows written: 14212\nRejected rows: 0\n",
            From="<erp-export@harbor-logistics.example>",
            Subject="Nightly export finished: 14,212 rows",
        )
    )
    assert (d.action, d.reason, d.category) == (Action.FILTERED, "scripted-sender", "notification")


def test_a_person_announcing_on_a_list_goes_to_review_and_a_robot_is_filtered():
    person = build(
        {
            "From": "Ines Carvalho <ines@orchard-db.example>",
            "To": "support@msp.example",
            "Subject": "[Orchard Announce] 7.4.2 released",
            "Message-ID": "<5b1c-77a1@orchard-db.example>",
            "User-Agent": "Mozilla Thunderbird",
        },
        "Hi all,\n\n7.4.2 fixes the WAL writer stall on full disks.\n\nCheers,\nInes\n",
    )
    d = decided(person)
    assert (d.action, d.reason) == (Action.REVIEW, "announce-list-subject")
    robot = build(
        {
            "From": "Orchard DB <releases@orchard-db.example>",
            "To": "announce@orchard-db.example",
            "Subject": "[Orchard Announce] 7.4.2 released",
            "Message-ID": "<5b1c-77a2@orchard-db.example>",
        },
        "7.4.2 fixes the WAL writer stall on full disks.\n",
    )
    d = decided(robot)
    assert (d.action, d.reason, d.category) == (Action.FILTERED, "announce-list-subject", "bulk")
    assert {s.name for s in d.evidence} == {
        "rule:announce-list-subject",
        "rule:announce-list-recipient",
    }


# -- a spam verdict: one piece of evidence, set aside by one sign of a person -----------


def spam_verdict_on_a_person(body: str) -> bytes:
    """A person's request that the receiving SpamAssassin scored over its threshold."""
    return build(
        [
            ("Return-Path", "<a.dickie@school.example>"),
            ("X-Spam-Flag", "YES"),
            ("X-Spam-Status", "Yes, score=6.3 required=4.8 tests=BAYES_50,FORGED_MUA_OUTLOOK"),
            ("From", '"A. Dickie" <a.dickie@school.example>'),
            ("To", "<support@msp.example>"),
            ("Subject", "[SPAM] the map you sent us"),
            ("Date", "Tue, 10 Mar 2026 11:09:39 +0000"),
            ("Message-ID", "<20260310101928.DA5F4@mx.msp.example>"),
            ("X-Mailer", "Microsoft Outlook, Build 10.0.3416"),
        ],
        body,
    )


DISCLAIMER = "".join(
    f"{line}\n"
    for line in (
        "*" * 70,
        "DISCLAIMER:",
        "This email and any files transmitted with it are intended for the use of the",
        "individual or entity to whom they are addressed. It may contain information",
        "of a confidential or privileged nature.",
        "If you have received this email in error please notify the originator.",
        "The views expressed in this message are those of the sender.",
        "*" * 70,
        "The Council's web site: https://www.council.example",
    )
)


@pytest.mark.parametrize(
    "body",
    [
        "Our school's eco group was given your map. Could you send us ten more?\n\n"
        "Thanks\n\nAudrey Dickie\n\n" + DISCLAIMER,
        "",  # the text lost on the way: the mail client is the only sign left
    ],
    ids=["signed-above-a-disclaimer", "empty-body"],
)
def test_a_persons_mail_that_the_spam_filter_misjudged_goes_to_review(body):
    """X-Spam-Flag and X-Spam-Status are one decision; the Outlook X-Mailer sets it aside."""
    d = decided(spam_verdict_on_a_person(body))
    assert (d.action, d.reason, d.ticket, d.category) == (Action.REVIEW, "spam-flag", None, None)
    assert {s.name for s in d.evidence} >= {"rule:spam-flag", "rule:spam-status", "mail-client"}


def test_a_spam_verdict_with_no_sign_of_a_person_is_filtered_as_spam():
    raw = spam_verdict_on_a_person("100% HERBAL. Order now at the lowest price.\n").replace(
        b"X-Mailer: Microsoft Outlook, Build 10.0.3416\r\n", b""
    )
    d = decided(raw)
    assert (d.action, d.reason, d.category) == (Action.FILTERED, "spam-flag", "spam")


def test_explain_shows_one_verdict_and_the_sign_that_set_it_aside():
    d = decided(spam_verdict_on_a_person("Could you send us ten more maps?\n"))
    lines = "\n".join(d.reasons)
    assert (
        "evidence machine: rule:spam-flag (part of one spam verdict): header:x-spam-flag" in lines
    )
    assert "evidence machine: rule:spam-status (part of one spam verdict)" in lines
    assert "evidence person: mail-client: x-mailer: Microsoft Outlook, Build 10.0.3416" in lines
    assert (
        "evidence: review: only one spam verdict (spam-flag, spam-status), no sign of a machine,"
        " and a sign of a person is enough: mail-client" in lines
    )
    assert [e["verdict"] for e in d.as_json()["evidence"] if e["side"] == "machine"] == [
        "spam",
        "spam",
    ]


@pytest.mark.parametrize(
    ("change", "signal"),
    [
        ("Could you send us ten more?\nTo unsubscribe click here.\n", "bulk-wording"),
        ("Could you send us ten more?\n", "automation-headers"),  # with Feedback-ID below
        ("Could you send us ten more?\n", "mailer-software"),  # X-Mailer: PHPMailer below
    ],
    ids=["bulk-wording", "automation-header", "mailer-software"],
)
def test_a_spam_verdict_with_a_sign_of_a_machine_stays_filtered_as_spam(change, signal):
    raw = spam_verdict_on_a_person(change)
    if signal == "automation-headers":
        raw = raw.replace(b"X-Mailer:", b"Feedback-ID: 1:campaign:esp\r\nX-Mailer:")
    if signal == "mailer-software":
        raw = raw.replace(b"Microsoft Outlook, Build 10.0.3416", b"PHPMailer 6.9.1")
    d = decided(raw)
    assert (d.action, d.reason, d.category) == (Action.FILTERED, "spam-flag", "spam")
    assert signal in {s.name for s in d.evidence}


def test_a_spam_verdict_beside_another_weak_rule_is_weighed_as_two_rules_not_three():
    """From info@ and a SpamAssassin verdict: two pieces of evidence against the person."""
    sender = '"School office" <info@school.example>'
    one = spam_verdict_on_a_person("Could you send us ten more?\n").replace(
        b'"A. Dickie" <a.dickie@school.example>', sender.encode()
    )
    d = decided(one)  # the reason is the first rule in file order; the category the verdict's
    assert (d.action, d.reason, d.category) == (Action.FILTERED, "sow-from-info", "spam")
    assert "2 weak rule(s) (3 fired, one verdict counted once)" in d.reasons[-1]
    three = spam_verdict_on_a_person(
        "Hello,\ncould you send us ten more maps?\n\nKind regards,\nAudrey\n"
    ).replace(b'"A. Dickie" <a.dickie@school.example>', sender.encode())
    d = decided(three)  # a mail client, a greeting and a signature: more than two
    assert (d.action, d.reason) == (Action.REVIEW, "sow-from-info"), d.reasons


def test_with_no_verdict_categories_each_spam_rule_counts_on_its_own(tmp_path):
    """`[verdict] categories` has its effect: emptied, the misjudged mail is filtered again."""
    import shutil

    rules_dir = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules_dir)
    path = rules_dir / "evidence.toml"
    text = path.read_text(encoding="utf-8")
    assert 'categories = ["spam"]' in text
    path.write_text(text.replace('categories = ["spam"]', "categories = []"), encoding="utf-8")
    rules = Rules.load(replace(CONFIG, rules_dir=Path(rules_dir)))
    raw = spam_verdict_on_a_person("Could you send us ten more?\n\nThanks\nAudrey\n")
    assert decided(raw).action == Action.REVIEW
    d = decided(raw, rules)
    assert (d.action, d.reason, d.category) == (Action.FILTERED, "spam-flag", "spam")


def test_check_refuses_a_verdict_category_the_filters_do_not_know(tmp_path):
    import shutil

    from click.testing import CliRunner

    from triage.cli import cli

    rules_dir = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules_dir)
    path = rules_dir / "evidence.toml"
    path.write_text(
        path.read_text(encoding="utf-8").replace('categories = ["spam"]', 'categories = ["Spam!"]'),
        encoding="utf-8",
    )
    config = tmp_path / "triage.toml"
    config.write_text(f'[rules]\ndir = "{rules_dir}"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", "--config", str(config)])
    assert result.exit_code != 0
    assert f"{path}: [verdict.categories] ['spam!'] is not a category" in result.output
    assert "fix:" in result.output


def test_a_forged_verdict_on_a_persons_mail_is_never_answered(store):
    """A sender who writes X-Spam-Flag himself gets review at worst: no ticket, no mail out."""
    raw = spam_verdict_on_a_person("Could you send us ten more?\n")
    run_batch(store, RULES, [analyse(raw, "1.eml", RULES)], NOW, [raw])
    assert store.conn.execute("SELECT COUNT(*) FROM tickets").fetchone()[0] == 0
    assert store.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
    action = store.conn.execute("SELECT action FROM messages").fetchone()[0]
    assert action == "review"


# -- a reply in a conversation: a sign of a person, and the signature above the quote ------

OWN = "Works here too, the scanner is back.\n\n"
QUOTED = "> the driver update removed the scanner profile.\n> Please install the new driver.\n"


@pytest.mark.parametrize(
    "body",
    [
        OWN + "On Sun, 8 Mar 2026, Priya Natarajan wrote:\n\n" + QUOTED,
        OWN
        + "On Sun, 8 Mar 2026 at 10:14, Priya Natarajan <\npriya@msp.example> wrote:\n"
        + QUOTED,  # Gmail wraps a long attribution
        OWN + "Am 08.03.2026 um 10:14 schrieb Priya Natarajan:\n" + QUOTED,
        OWN + "Le dim. 8 mars 2026 à 10:14, Priya <priya@msp.example> a\u00a0écrit :\n" + QUOTED,
        OWN + "El dom, 8 mar 2026 a las 10:14, Priya (<priya@msp.example>) escribió:\n" + QUOTED,
        OWN + "-----Original Message-----\nFrom: Priya Natarajan\nSent: Sunday, March 8, 2026"
        "\nSubject: scanner\n\nthe driver update removed the scanner profile.\n",
        OWN + "________________________________\nVon: Priya Natarajan <priya@msp.example>\n"
        "Gesendet: Sonntag, 8. März 2026 10:14\nAn: George\n\nder Treiber fehlt.\n",
        "On Sun, 8 Mar 2026, Priya Natarajan wrote:\n" + QUOTED + "\nWorks here too.\n",
    ],
    ids=[
        "english",
        "gmail-wrapped",
        "german",
        "french",
        "spanish",
        "outlook-original-message",
        "outlook-header-block-german",
        "bottom-posted",
    ],
)
def test_a_reply_that_quotes_the_message_it_answers_shows_a_person(body):
    raw = web_form(
        body,
        From="<george@isp.example>",
        Subject="Re: scanner missing after the update",
        In_Reply_To="<a81f@helpdesk.msp.example>",
    )
    d = decided(raw)
    assert "conversation-reply" in {s.name for s in d.evidence}, d.reasons
    # one weak rule against one sign of a person: not enough alone (needs = 2)
    assert (d.action, d.reason) == (Action.FILTERED, "scripted-sender")


@pytest.mark.parametrize(
    ("body", "in_reply_to"),
    [
        (OWN + "On Sun, 8 Mar 2026, Priya Natarajan wrote:\n" + QUOTED, ""),
        (
            OWN + "On Sun, 8 Mar 2026, Support wrote:\n" + QUOTED,
            "<T-000042.0123456789abcdef@msp.example>",
        ),
        ("On Sun, 8 Mar 2026, Priya Natarajan wrote:\n" + QUOTED, "<a81f@helpdesk.msp.example>"),
        (OWN + "This is what the manual wrote:\n" + QUOTED, "<a81f@helpdesk.msp.example>"),
    ],
    ids=[
        "no-in-reply-to",
        "answers-our-acknowledgement",
        "nothing-of-its-own",
        "no-date-or-address",
    ],
)
def test_what_is_not_a_reply_in_a_conversation(body, in_reply_to):
    raw = web_form(
        body, From="<george@isp.example>", Subject="Re: scanner", In_Reply_To=in_reply_to
    )
    if not in_reply_to:
        raw = raw.replace(b"In-Reply-To: \r\n", b"")
    d = decided(raw)
    assert "conversation-reply" not in {s.name for s in d.evidence}, d.reasons
    assert d.action == Action.FILTERED


def test_the_signature_is_looked_for_above_the_quote_not_in_the_quoted_message():
    """The quoted message's own 'Best regards, Priya' is not this author's signature."""
    raw = web_form(
        OWN + "-----Original Message-----\nFrom: Priya Natarajan\nSent: Sunday, March 8, 2026"
        "\n\nthe driver update removed the scanner profile.\n\nBest regards,\nPriya\n",
        From="<george@isp.example>",
        Subject="Re: scanner",
    )
    assert "signature" not in {s.name for s in decided(raw).evidence}
    signed = raw.replace(
        b"scanner is back.\r\n\r\n", b"scanner is back.\r\n\r\nCheers,\r\nGeorge\r\n"
    )
    signature = [s for s in decided(signed).evidence if s.name == "signature"]
    assert [(s.where, s.detail) for s in signature] == [
        ("body (above the quote)", "sign-off 'Cheers,'")
    ]


def test_a_persons_reply_through_a_cdo_webmail_is_not_dropped():
    raw = web_form(
        "Works here too, the scanner is back.\n\nThanks,\nGeorge\n\n\n"
        "On Sun, 8 Mar 2026, Priya Natarajan wrote:\n\n"
        "> Hello George,\n> \n> the driver update removed the scanner profile.\n"
        "> Please install the new driver from the vendor's page, restart,\n"
        "> and open the scanning app once so that it finds the device again.\n"
        "> If it still does not show up, send me the app's log file from\n"
        "> the Help menu and I will look at it today.\n> \n> Best regards,\n> Priya\n",
        From="<george@isp.example>",
        Subject="Re: scanner missing after the update",
        In_Reply_To="<a81f@helpdesk.msp.example>",
        References="<a81f@helpdesk.msp.example>",
    )
    d = decided(raw)
    assert (d.action, d.reason) == (Action.REVIEW, "scripted-sender"), d.reasons
    signs = {s.name: s for s in d.evidence if s.side == "person"}
    assert set(signs) == {"conversation-reply", "signature"}
    assert signs["signature"].where == "body (above the quote)"
    assert "<a81f@helpdesk.msp.example>" in signs["conversation-reply"].detail
