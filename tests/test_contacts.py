"""Contact matching: each step, the order between them, and what an unverified match keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from triage.core.contact_rows import parse
from triage.core.contacts import Contact, Directory, Match, is_free_mail, normalize_address

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "contacts.csv"

JANE = Contact.create(
    "Jane.Doe@Acme.example",
    "Jane Doe",
    "Acme Corp",
    "New York HQ",
    "premium",
    "America/New_York",
    vip=True,
    aliases=["JDoe@acme.example", "jane.doe@acme.example"],
)
BOB = Contact.create("bob@acme.example", "Bob Stone", "Acme Corp", plan="premium")
CARL = Contact.create("carl@acme.example", "Carl Jung", "Acme Corp", plan="standard")
HANK = Contact.create(
    "hank@globex.example", "Hank Scorpio", "Globex", plan="standard", timezone="Europe/Berlin"
)
PAT = Contact.create("pat.smith@gmail.com", "Pat Smith", "Initech", plan="basic")
DIRECTORY = Directory.build([JANE, BOB, CARL, HANK, PAT])


def match(address: str, name: str = "") -> Match:
    return DIRECTORY.match(address, name)


def test_contact_create_normalises_addresses_and_blanks():
    assert JANE.email == "jane.doe@acme.example"
    assert JANE.aliases == ("jdoe@acme.example",)  # lowercased; its own address dropped
    assert Contact.create(" x@y.example ", company=" ").company is None
    assert JANE.domain == "acme.example"


@pytest.mark.parametrize(
    "address", ["jane.doe@acme.example", "JANE.DOE@ACME.EXAMPLE", "<Jane.Doe@acme.example>"]
)
def test_exact(address):
    m = match(address, "Somebody Else")
    assert (m.kind, m.contact, m.verified, m.score) == ("exact", JANE, True, None)
    assert (m.company, m.plan, m.timezone, m.vip) == (
        "Acme Corp",
        "premium",
        "America/New_York",
        True,
    )


def test_plus_tag_is_removed():
    m = match("jane.doe+billing@acme.example")
    assert (m.kind, m.contact, m.verified) == ("plus", JANE, True)
    assert "jane.doe@acme.example" in m.why


def test_exact_beats_plus_when_the_tagged_address_is_itself_a_contact():
    tagged = Contact.create("ops+alerts@acme.example", "Ops Alerts", "Acme Corp")
    d = Directory.build([tagged, Contact.create("ops@acme.example", "Ops", "Acme Corp")])
    assert d.match("ops+alerts@acme.example").contact == tagged
    assert d.match("ops+alerts@acme.example").kind == "exact"


@pytest.mark.parametrize("address", ["jdoe@acme.example", "JDoe+x@Acme.Example"])
def test_alias(address):
    m = match(address)
    assert (m.kind, m.contact, m.verified, m.vip) == ("alias", JANE, True, True)


def test_domain_gives_company_and_its_most_common_plan_but_no_person():
    m = match("new.hire@acme.example", "New Hire")
    assert m == Match(
        "domain", None, "Acme Corp", "premium", "America/New_York", False, False, None, m.why
    )
    assert "acme.example" in m.why


def test_subdomain_belongs_to_the_parent_company():
    assert match("x@eu.globex.example").company == "Globex"
    assert match("x@globex.example.evil.example").kind == "none"


@pytest.mark.parametrize(
    "domain",
    ["gmail.com", "GMAIL.com", "outlook.com", "hotmail.com", "yahoo.com", "icloud.com", "gmx.de",
     "gmx.at", "gmx.net", "web.de", "proton.me", "yahoo.co.uk", "hotmail.fr"],
)  # fmt: skip
def test_free_mail_domains(domain):
    assert is_free_mail(domain)


@pytest.mark.parametrize(
    "domain", ["acme.example", "outlook.acme.example", "gmxfoo.de", "mail.acme.example"]
)
def test_company_domains_are_not_free_mail(domain):
    assert not is_free_mail(domain)


def test_free_mail_domain_never_maps_to_a_company():
    """Pat of Initech writes from gmail.com: other gmail users are not Initech."""
    assert match("pat.smith@gmail.com").company == "Initech"  # Pat herself, exactly
    stranger = match("someone.else@gmail.com")
    assert (stranger.kind, stranger.company, stranger.plan) == ("none", None, None)
    assert "gmail.com" not in DIRECTORY.by_domain


def test_domain_shared_by_two_companies_equally_is_not_guessed():
    d = Directory.build(
        [
            Contact.create("a@consult.example", "Ann A", "Acme Corp"),
            Contact.create("b@consult.example", "Ben B", "Globex"),
        ]
    )
    assert d.match("c@consult.example").kind == "none"


def test_domain_takes_the_majority_company():
    d = Directory.build(
        [
            Contact.create("a@consult.example", "Ann A", "Acme Corp", plan="basic"),
            Contact.create("b@consult.example", "Ben B", "Acme Corp"),
            Contact.create("c@consult.example", "Cy C", "Globex"),
        ]
    )
    assert (d.match("x@consult.example").company, d.match("x@consult.example").plan) == (
        "Acme Corp",
        "basic",
    )


@pytest.mark.parametrize(
    ("display", "expected"),
    [
        ("Jane Do", JANE),
        ("jane doe", JANE),
        ("Doe, Jane", JANE),
        ("Hank  Scorpio", HANK),
        ("Hank Scorpioo", HANK),
    ],
)
def test_fuzzy_suggests_a_contact_by_display_name(display, expected):
    m = match("someone@hotmail.com", display)
    assert (m.kind, m.contact, m.verified) == ("fuzzy", expected, False)
    assert m.score is not None and m.score >= 92
    # a suggestion for a person to confirm carries nothing: no company, plan, VIP or zone
    assert (m.vip, m.plan, m.company, m.timezone) == (False, None, None, None)


def test_fuzzy_never_runs_when_an_address_matches():
    """Bob's address with Jane's name is Bob: the name is not even looked at."""
    for address, kind in (
        ("bob@acme.example", "exact"),
        ("bob+x@acme.example", "plus"),
        ("jdoe@acme.example", "alias"),
    ):
        m = match(address, "Hank Scorpio")
        assert m.kind == kind and m.score is None
    assert match("jdoe@acme.example", "Hank Scorpio").contact == JANE


def test_domain_step_comes_before_fuzzy():
    assert match("hank.private@globex.example", "Hank Scorpio").kind == "domain"


def test_threshold_is_honoured():
    strict = Directory.build([JANE, HANK], fuzzy_threshold=99)
    loose = Directory.build([JANE, HANK], fuzzy_threshold=80)
    assert strict.match("x@gmail.com", "Jane Do").kind == "none"
    assert strict.match("x@gmail.com", "Jane Doe").kind == "fuzzy"
    assert loose.match("x@gmail.com", "Jane Dow").kind == "fuzzy"  # score 87.5
    assert DIRECTORY.match("x@gmail.com", "Jane Dow").kind == "none"  # default 92


@pytest.mark.parametrize("threshold", [0, -5, 101])
def test_threshold_must_be_a_percentage(threshold):
    with pytest.raises(ValueError, match="fuzzy_threshold"):
        Directory.build([JANE], fuzzy_threshold=threshold)


@pytest.mark.parametrize(
    "display",
    [
        "",
        "   ",
        "???",
        "--",
        "J.",
        "12345",
        "jane.doe@acme.example",
        "x@gmail.com",
        "<x@gmail.com>",
    ],
)
def test_empty_or_garbage_display_names_never_fuzzy_match(display):
    d = Directory.build([JANE, Contact.create("q@acme.example", "Ab")])
    assert d.match("x@gmail.com", display).kind == "none"


def test_a_name_shared_by_two_contacts_is_no_suggestion():
    twin = Contact.create("jane@globex.example", "Jane Doe", "Globex")
    m = Directory.build([JANE, twin]).match("x@gmail.com", "Jane Doe")
    assert (m.kind, m.contact) == ("none", None)
    assert "2 contacts" in m.why


def test_two_names_equally_close_is_no_suggestion():
    d = Directory.build(
        [
            Contact.create("a@x.example", "Paul D Werner"),
            Contact.create("b@x.example", "Paul E Werner"),
        ],
        fuzzy_threshold=90,
    )
    assert d.match("x@gmail.com", "Paul Werner").kind == "none"
    assert d.match("x@gmail.com", "Paul D. Werner").contact.email == "a@x.example"


def test_none():
    m = match("nobody@unknown.example", "Completely Different")
    assert m == Match("none", None, None, None, None, False, False, None, m.why)


@pytest.mark.parametrize("address", ["", "not-an-address", "@acme.example", "jane@", "<>"])
def test_garbage_addresses_match_nothing(address):
    assert match(address).kind == "none"


def test_unverified_keeps_who_but_drops_privileges():
    """A forged From (dmarc=fail) still shows whom it claims, never VIP or plan."""
    m = match("jane.doe@acme.example").unverified("dmarc=fail")
    assert (m.kind, m.contact, m.company, m.timezone) == (
        "exact",
        JANE,
        "Acme Corp",
        "America/New_York",
    )
    assert (m.verified, m.vip, m.plan) == (False, False, None)
    assert m.why.endswith("dmarc=fail")
    assert match("jdoe@acme.example").downgraded("dmarc=fail") == match(
        "jdoe@acme.example"
    ).unverified("dmarc=fail")
    assert Match.none().kind == "none" and Match.none().verified is False


def test_first_contact_wins_on_repeated_address_and_alias():
    again = Contact.create("jane.doe@acme.example", "Impostor", aliases=["jdoe@acme.example"])
    d = Directory.build([JANE, again])
    assert d.match("jane.doe@acme.example").contact == JANE
    assert d.match("jdoe@acme.example").contact == JANE
    assert len(d) == 1


def test_alias_equal_to_another_contacts_address_is_that_contact():
    d = Directory.build(
        [
            Contact.create("a@x.example", "Al A", aliases=["b@x.example"]),
            Contact.create("b@x.example", "Bo B"),
        ]
    )
    assert d.match("b@x.example").kind == "exact"
    assert d.match("b@x.example").contact.name == "Bo B"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Jane <Jane@X.example>", "jane@x.example"),
        ("mailto:A@B.example", "a@b.example"),
        (" a@b.example ", "a@b.example"),
    ],
)
def test_normalize_address(raw, clean):
    assert normalize_address(raw) == clean


def test_fixture_directory_matches_the_demo_senders():
    result = parse(FIXTURE.read_bytes(), str(FIXTURE))
    assert (len(result.rows), result.rejected) == (15, ())
    d = Directory.build(result.rows)
    assert {c.company for c in result.rows} == {"Acme Corp", "Globex Corporation", "Initech"}
    assert sum(c.vip for c in result.rows) == 1
    assert d.match("jdoe@acme.example").kind == "alias"
    assert d.match("someone@acme.example").plan == "premium"
    assert d.match("someone@globex.example").timezone == "Europe/Berlin"
    assert d.match("someone@initech.example").company == "Initech"
    assert d.match("someone@gmail.com", "Milton Waddams").kind == "fuzzy"
    assert d.match("someone@gmail.com").kind == "none"
