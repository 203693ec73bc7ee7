"""Who wrote it and where it goes, end to end through `triage replay` with contacts stored."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from triage.cli import cli

from .conftest import build

NOW = "2026-03-10T14:30:00Z"  # a Tuesday
CONTACTS = """email,name,company,site,plan,timezone,vip,aliases
jane@acme.example,Jane Doe,Acme,HQ,premium,America/New_York,,jdoe@acme.example
victor@acme.example,Victor Vip,Acme,HQ,standard,UTC,yes,
held@acme.example,Held Person,Acme,HQ,basic,UTC,,
bob@globex.example,Bob Stone,Globex,,basic,Europe/Berlin,,
"""


def msg(
    sender: str, subject: str = "Printer jammed", body: str = "Please help.\n", **headers: str
) -> bytes:
    base = {
        "From": sender,
        "To": "support@msp.example",
        "Subject": subject,
        "Date": "Tue, 10 Mar 2026 14:00:00 +0000",
        "Message-ID": f"<{abs(hash((sender, subject, body))) % 10**12}@mail.example>",
    }
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    return build(base, body)


@pytest.fixture
def env(tmp_path):
    """A database with contacts, a config, and a function that replays messages into it."""
    csv = tmp_path / "contacts.csv"
    csv.write_text(CONTACTS, encoding="utf-8")
    db = tmp_path / "t.db"
    config = tmp_path / "triage.toml"

    def configure(extra: str = "", identity: str = "") -> None:
        config.write_text(
            f'[store]\ndb = "{db}"\n[identity]\ndomains = ["msp.example"]\n'
            f'support_address = "support@msp.example"\nagents = ["agent@partner.example"]\n'
            f"{identity}{extra}",
            encoding="utf-8",
        )

    configure()
    result = CliRunner().invoke(cli, ["contacts", "import", "--config", str(config), str(csv)])
    assert result.exit_code == 0, result.output

    def run(*messages: bytes) -> list[dict]:
        folder = tmp_path / f"in{len(list(tmp_path.glob('in*')))}"
        folder.mkdir()
        for n, raw in enumerate(messages):
            (folder / f"{n:02d}.eml").write_bytes(raw)
        out = CliRunner().invoke(
            cli, ["replay", "--config", str(config), "--json", "--now", NOW, str(folder)]
        )
        assert out.exit_code == 0, out.output
        return [json.loads(line) for line in out.stdout.splitlines()]

    run.configure = configure
    run.config = config
    run.db = db
    return run


def ticket_row(db, number: str) -> dict:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    return dict(conn.execute("SELECT * FROM tickets WHERE number = ?", (number,)).fetchone())


def test_each_match_kind_is_recorded(env):
    out = env(
        msg("Jane Doe <JANE@acme.example>"),
        msg("jane+printer@acme.example", subject="b"),
        msg("jdoe@acme.example", subject="c"),
        msg("someone.new@acme.example", subject="d"),
        msg("Bob Stone <bob.stone@gmail.com>", subject="e"),
        msg("stranger@unknown.example", subject="f"),
    )
    assert [(o["match"], o["contact"]) for o in out] == [
        ("exact", "jane@acme.example"),
        ("plus", "jane@acme.example"),
        ("alias", "jane@acme.example"),
        ("domain", None),
        ("fuzzy", "bob@globex.example"),
        ("none", None),
    ]
    assert [o["verified"] for o in out] == [True, True, True, False, False, False]


def test_contact_plan_and_time_zone_set_the_deadline(env):
    # Jane: premium (24x7) P3; Bob (fuzzy: unverified) gets the defaults, not his basic plan.
    out = env(msg("jane@acme.example"))
    row = ticket_row(env.db, out[0]["ticket"])
    assert (row["plan"], row["timezone"]) == ("premium", "America/New_York")


def test_vip_is_raised_one_level_and_marked(env):
    out = env(msg("victor@acme.example"), msg("jane@acme.example", subject="x"))
    assert [o["priority"] for o in out] == ["P2", "P3"]
    assert out[0]["vip"] is True and ticket_row(env.db, out[0]["ticket"])["vip"] == 1


def test_vip_raise_is_configurable(env):
    env.configure("[contacts]\nvip_raise = 0\n")
    assert env(msg("victor@acme.example"))[0]["priority"] == "P3"


def test_forged_from_loses_contact_privileges_and_gets_no_acknowledgement(env):
    forged = msg(
        "victor@acme.example",
        Authentication_Results="mx.msp.example; spf=fail smtp.mailfrom=acme.example; dkim=none; dmarc=fail header.from=acme.example",
    )
    out = env(forged)[0]
    assert (out["match"], out["verified"], out["vip"], out["priority"]) == (
        "exact",
        False,
        False,
        "P3",
    )
    assert out["auto_reply"] is False and "failed authentication" in out["reply_suppressed"]


def test_unknown_sender_policies(env):
    env.configure('[contacts]\nunknown = "ignore"\n')
    out = env(msg("stranger@unknown.example"))[0]
    assert (out["action"], out["reason"], out["ticket"]) == ("filtered", "unknown-sender", None)

    env.configure('[contacts]\nunknown = "hold"\n')
    out = env(msg("other@unknown.example"))[0]
    assert out["action"] == "ticket" and out["auto_reply"] is False
    assert ticket_row(env.db, out["ticket"])["status"] == "pending-approval"
    result = CliRunner().invoke(
        cli, ["contacts", "approve", "--config", str(env.config), "other@unknown.example"]
    )
    assert result.exit_code == 0 and out["ticket"] in result.output
    assert ticket_row(env.db, out["ticket"])["status"] == "open"
    conn = sqlite3.connect(env.db)
    raw = conn.execute(
        "SELECT o.raw FROM outbox o JOIN tickets t ON t.id = o.ticket_id WHERE t.number = ?",
        (out["ticket"],),
    ).fetchone()[0]
    assert (
        f"Subject: [#{out['ticket']}] Printer jammed" in raw
        and "Auto-Submitted: auto-replied" in raw
    )
    # approved now: the next message from them is served
    assert env(msg("other@unknown.example", subject="again"))[0]["auto_reply"] is True


def test_hand_forward_by_an_agent_names_the_customer(env):
    inline = msg(
        "agent@partner.example",
        subject="Fwd: VPN down",
        body="Can you take this one?\n\n---------- Forwarded message ---------\n"
        "From: Jane Doe <jane@acme.example>\nDate: Tue, 10 Mar 2026\nSubject: VPN down\n\nThe VPN is down.\n",
    )
    attached = build(
        {
            "From": "agent@partner.example",
            "To": "support@msp.example",
            "Subject": "FW: Printer",
            "Message-ID": "<fw2@partner.example>",
            "MIME-Version": "1.0",
            "Content-Type": 'multipart/mixed; boundary="B"',
        },
        "--B\nContent-Type: text/plain\n\nsee attached\n--B\nContent-Type: message/rfc822\n\n"
        "From: Bob Stone <bob@globex.example>\nSubject: Printer\nMessage-ID: <orig@globex.example>\n\nIt jams.\n--B--\n",
    )
    customer_forward = msg(
        "jane@acme.example",
        subject="Fwd: from my colleague",
        body="Please help my colleague.\n\n---------- Forwarded message ---------\nFrom: Bob Stone <bob@globex.example>\n\nhi\n",
    )
    out = env(inline, attached, customer_forward)
    assert [(o["requester"], o["forwarded_by"], o["contact"]) for o in out] == [
        ("jane@acme.example", "agent@partner.example", "jane@acme.example"),
        ("bob@globex.example", "agent@partner.example", "bob@globex.example"),
        (
            "jane@acme.example",
            None,
            "jane@acme.example",
        ),  # a customer forwarding stays the requester
    ]
    assert ticket_row(env.db, out[0]["ticket"])["requester"] == "jane@acme.example"


@pytest.mark.parametrize(
    ("subject", "from_line"),
    [
        (
            "I: Stampante bloccata",
            "Da: Jane Doe <jane@acme.example>\nInviato: martedì 10 marzo 2026",
        ),
        ("PD: Drukarka", "Od: Jane Doe <jane@acme.example>\nWysłano: wtorek, 10 marca 2026"),
        ("转发: 打印机无法使用", "发件人: Jane Doe <jane@acme.example>\n发送时间: 2026年3月10日"),
        ("転送: プリンター", "差出人: Jane Doe <jane@acme.example>\n送信日時: 2026年3月10日"),
        ("VB: Skrivaren", "Från: Jane Doe <jane@acme.example>\nSkickat: den 10 mars 2026"),
    ],
)
def test_hand_forward_with_a_localized_subject_names_the_customer(env, subject, from_line):
    """Outlook in Italian, Polish, Chinese, Japanese and Swedish: no marker line, only the
    localized forward prefix and the localized From line open the forwarded block."""
    forward = msg(
        "agent@partner.example",
        subject=subject,
        body=f"Please take this one.\n\n{from_line}\nSubject: x\n\nThe printer is jammed.\n",
    )
    out = env(forward)
    assert (out[0]["requester"], out[0]["forwarded_by"]) == (
        "jane@acme.example",
        "agent@partner.example",
    )


def test_queues_route_by_recipient(env):
    env.configure(
        '[[queue]]\nname = "urgent"\naddress = "urgent@msp.example"\npriority = "P1"\n'
        '[[queue]]\nname = "billing"\naddress = "billing@msp.example"\nplan = "basic"\n'
    )
    out = env(
        msg("stranger@unknown.example", subject="question about invoice", To="urgent@msp.example"),
        msg("stranger@unknown.example", subject="invoice", To="billing@msp.example"),
        msg("stranger@unknown.example", subject="invoice 2", Delivered_To="billing@msp.example"),
    )
    assert [(o["queue"], o["priority"]) for o in out] == [
        ("urgent", "P1"),
        ("billing", "P3"),
        ("billing", "P3"),
    ]
    assert ticket_row(env.db, out[1]["ticket"])["plan"] == "basic"


def test_bad_queue_is_refused_by_check(env):
    env.configure('[[queue]]\nname = "x"\naddress = "x@msp.example"\nplan = "gold"\n')
    result = CliRunner().invoke(cli, ["check", "--config", str(env.config)])
    assert result.exit_code != 0 and "plan 'gold' is not a plan of connectwise" in result.output


def test_contacts_reimport_updates_and_reports_rejects(env, tmp_path):
    csv = tmp_path / "more.csv"
    csv.write_bytes(
        "\ufeffemail;name;company;plan;timezone;vip\r\n"
        "jane@acme.example;Jane D.;Acme;basic;UTC;\r\n"
        "not-an-address;X;Y;basic;UTC;\r\n"
        "new@initech.example;New;Initech;standard;Mars/Base;\r\n"
        "ok@initech.example;Ok;Initech;standard;UTC;no\r\n".encode()
    )
    result = CliRunner().invoke(cli, ["contacts", "import", "--config", str(env.config), str(csv)])
    assert result.exit_code == 0
    assert "1 added, 1 updated, 2 rejected" in result.output
    assert "line 3:" in result.output and "line 4:" in result.output
    show = CliRunner().invoke(
        cli, ["contacts", "show", "--config", str(env.config), "jane@acme.example"]
    )
    assert "Jane D." in show.output and "basic" in show.output


def outbox_rows(db) -> list[tuple[str, str]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT to_addr, raw FROM outbox ORDER BY id").fetchall()
    finally:
        conn.close()


def test_an_encoded_word_spelling_a_vip_address_grants_nothing(env):
    """Issue 12.1: the address is the one in the raw header; the encoded word is only a name."""
    (first,) = env(msg("victor@acme.example", subject="VPN down"))
    spelled = msg(
        "=?utf-8?q?victor=40acme=2Eexample?= <eve@evil.example>",
        subject=f"Re: [#{first['ticket']}] VPN down",
    )
    injected = msg("=?utf-8?q?Eve=0D=0ABcc=3A_x=40y?= <eve@evil.example>", subject="hello")
    out = env(spelled, injected)
    assert [(o["action"], o["match"], o["contact"], o["vip"]) for o in out] == [
        ("ticket", "none", None, False),
        ("ticket", "none", None, False),
    ]
    assert out[0]["priority"] == "P3" and out[0]["linked_ticket"] == first["ticket"]
    acks = outbox_rows(env.db)[1:]
    assert [to for to, _ in acks] == ["eve@evil.example", "eve@evil.example"]
    for _to, raw in acks:
        head = raw.split("\r\n\r\n", 1)[0]
        assert "Bcc:" not in head and "x@y" not in head
        assert [line.split(":")[0] for line in head.split("\r\n") if line.startswith("To")] == [
            "To"
        ]


# ------------------------------------------------------------------ forged senders (issue 12)

PASS = (
    "mx.msp.example; spf=pass smtp.mailfrom=acme.example; dkim=pass header.d=acme.example;"
    " dmarc=pass header.from=acme.example"
)
FAIL = (
    "mx.msp.example; spf=fail smtp.mailfrom=acme.example; dkim=none;"
    " dmarc=fail header.from=acme.example"
)


def stamped(raw: bytes, *results: str) -> bytes:
    """`raw` with Authentication-Results headers on top, the first given topmost."""
    for result in reversed(results):
        raw = f"Authentication-Results: {result}\r\n".encode() + raw
    return raw


def test_a_borrowed_name_buys_no_append_and_no_company(env):
    """Issue 12.2: a display-name match is a suggestion; it grants no company, plan or append."""
    (first,) = env(msg("Jane Doe <jane@acme.example>", subject="VPN down"))
    (out,) = env(
        msg("Jane Doe <eve.attacker@gmail.com>", subject=f"Re: [#{first['ticket']}] VPN down")
    )
    assert (out["action"], out["linked_ticket"]) == ("ticket", first["ticket"])
    assert (out["match"], out["contact"], out["verified"]) == ("fuzzy", "jane@acme.example", False)
    row = ticket_row(env.db, out["ticket"])
    assert (row["company"], row["timezone"]) == (None, "UTC") and row["plan"] != "premium"


def test_a_stored_message_id_appends_only_for_someone_on_the_ticket(env):
    jane = msg("jane@acme.example", subject="VPN down")
    (first,) = env(jane)
    mid = first["message_id"]
    out = env(
        msg("eve@evil.example", subject="Re: VPN down", In_Reply_To=mid),
        msg("jane@acme.example", subject="Re: VPN down", body="thanks", In_Reply_To=mid),
        msg("Victor <victor@acme.example>", subject="Re: VPN down", body="me too", References=mid),
    )
    assert [
        (o["action"], o["ticket"] if o["action"] == "append" else o["linked_ticket"]) for o in out
    ] == [
        ("ticket", first["ticket"]),  # a stranger: a new ticket, linked
        ("append", first["ticket"]),  # the requester
        ("append", first["ticket"]),  # a verified contact of the ticket's company
    ]


def test_a_from_that_fails_dmarc_never_appends(env):
    (first,) = env(msg("jane@acme.example", subject="VPN down"))
    token = f"Re: [#{first['ticket']}] VPN down"
    (out,) = env(stamped(msg("jane@acme.example", subject=token, body="x"), FAIL))
    assert (out["action"], out["linked_ticket"], out["verified"]) == (
        "ticket",
        first["ticket"],
        False,
    )
    assert out["auto_reply"] is False


def test_a_colleague_known_only_by_domain_appends_only_when_authenticated(env):
    """A domain match proves nothing about the person; authenticated, it proves the company."""
    (first,) = env(msg("jane@acme.example", subject="VPN down"))
    token = f"Re: [#{first['ticket']}] VPN down"
    out = env(
        msg("carol@acme.example", subject=token),
        stamped(msg("carol@acme.example", subject=token, body="2"), PASS),
        # a forged "pass" below the boundary's own header is not read
        stamped(
            msg("carol@acme.example", subject=token, body="3"),
            "mx.msp.example; spf=none smtp.mailfrom=acme.example; dmarc=none header.from=acme.example",
            PASS,
        ),
        stamped(msg("carol@acme.example", subject=token, body="4"), FAIL),
    )
    assert [(o["action"], o["match"]) for o in out] == [
        ("ticket", "domain"),
        ("append", "domain"),
        ("ticket", "domain"),
        ("ticket", "domain"),
    ]
    assert all(o["linked_ticket"] == first["ticket"] for o in out if o["action"] == "ticket")
    assert ticket_row(env.db, out[0]["ticket"])["plan"] == "premium"  # Acme's, unauthenticated
    assert ticket_row(env.db, out[3]["ticket"])["plan"] != "premium"  # not when DMARC fails


def forward(note: str, *auth: str) -> bytes:
    raw = msg(
        "agent@partner.example",
        subject="Fwd: VPN settings",
        body=f"{note}\n\n---------- Forwarded message ---------\n"
        "From: Victor Vip <victor@acme.example>\nSubject: VPN settings\n\n"
        "Please look at the VPN settings.\n",
    )
    return stamped(raw, *auth)


AGENT_PASS = (
    "mx.msp.example; dkim=pass header.d=partner.example; dmarc=pass header.from=partner.example"
)
AGENT_FAIL = (
    "mx.msp.example; spf=fail smtp.mailfrom=partner.example; dkim=none;"
    " dmarc=fail header.from=partner.example"
)


def test_a_forged_agent_forward_keeps_no_vip(env, tmp_path):
    """Issue 12.3: the forward names the customer; it counts only if the agent's mail authenticates."""
    out = env(
        forward("Take this one", AGENT_FAIL),
        forward("And this one"),
        forward("This one is real", AGENT_PASS),
    )
    assert [
        (o["requester"], o["forwarded_by"], o["contact"], o["verified"], o["vip"], o["priority"])
        for o in out
    ] == [
        ("victor@acme.example", "agent@partner.example", "victor@acme.example", False, False, "P3"),
        ("victor@acme.example", "agent@partner.example", "victor@acme.example", False, False, "P3"),
        ("victor@acme.example", "agent@partner.example", "victor@acme.example", True, True, "P2"),
    ]
    eml = tmp_path / "forged-forward.eml"
    eml.write_bytes(forward("Take this one", AGENT_FAIL))
    result = CliRunner().invoke(cli, ["explain", "--config", str(env.config), str(eml)])
    assert result.exit_code == 0, result.output
    assert "agent@partner.example" in result.output and "not authenticated" in result.output


def test_a_comment_or_an_earlier_hop_never_downgrades_a_real_customer(env):
    """Issue 12.4: results are parsed; comments are not results; the topmost header decides."""
    arc = (
        "mx.msp.example; arc=pass (i=1 spf=pass dkim=pass dmarc=fail fromdomain=acme.example);"
        " dmarc=pass header.from=acme.example"
    )
    out = env(
        stamped(msg("victor@acme.example", subject="a"), arc),
        stamped(
            msg("victor@acme.example", subject="b"),
            "mx.msp.example; dmarc=pass header.from=acme.example",
            "relay.lists.example; dmarc=fail header.from=acme.example",
        ),
    )
    assert [(o["verified"], o["vip"], o["priority"], o["auto_reply"]) for o in out] == [
        (True, True, "P2", True),
        (True, True, "P2", True),
    ]


def test_with_authserv_ids_only_our_boundary_is_believed(env):
    env.configure(identity='authserv_ids = ["mx.msp.example"]\n')
    (first,) = env(msg("jane@acme.example", subject="VPN down"))
    token = f"Re: [#{first['ticket']}] VPN down"
    foreign = "mx.evil.example; dmarc=pass header.from=acme.example"
    out = env(
        stamped(msg("victor@acme.example", subject="a"), FAIL.replace("mx.msp", "mx.evil")),
        stamped(msg("carol@acme.example", subject=token), foreign),
        stamped(msg("carol@acme.example", subject=token, body="2"), PASS),
    )
    assert (out[0]["verified"], out[0]["vip"]) == (True, True)  # a foreign fail is not ours
    assert [o["action"] for o in out[1:]] == ["ticket", "append"]  # nor a foreign pass


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ('["mx msp.example"]', "'mx msp.example' is not an authserv-id"),
        ('[""]', "'' is not an authserv-id"),
        ('"mx.msp.example"', "must be a list"),
    ],
)
def test_check_refuses_a_bad_authserv_id(env, value, needle):
    env.configure(identity=f"authserv_ids = {value}\n")
    result = CliRunner().invoke(cli, ["check", "--config", str(env.config)])
    assert result.exit_code != 0 and needle in result.output
    assert "identity.authserv_ids" in result.output and "fix:" in result.output


def ack_text(db, number: str) -> str:
    """The plain-text part of the acknowledgement queued for ticket `number`."""
    import email as email_lib

    raw = (
        sqlite3.connect(db)
        .execute(
            "SELECT o.raw FROM outbox o JOIN tickets t ON t.id = o.ticket_id WHERE t.number = ?",
            (number,),
        )
        .fetchone()[0]
    )
    parsed = email_lib.message_from_bytes(raw if isinstance(raw, bytes) else raw.encode())
    part = next(p for p in parsed.walk() if p.get_content_type() == "text/plain")
    return part.get_payload(decode=True).decode("utf-8")


def test_an_unknown_sender_is_told_the_priority_without_claims_about_their_systems(env):
    """ "critical: a service is down" went to a stranger's sales enquiry that said URGENT."""
    out = env(
        msg("buyer@unknown.example", subject="URGENT: pricing for 50 seats"),
        msg("Bob Stone <bob.stone@gmail.com>", subject="URGENT: pricing"),  # a name is no proof
        msg("jane@acme.example", subject="URGENT: file server down"),
        msg("someone.new@acme.example", subject="URGENT: my mailbox is down"),  # known company
    )
    assert [(o["match"], o["priority"], o["auto_reply"]) for o in out] == [
        ("none", "P1", True),
        ("fuzzy", "P1", True),
        ("exact", "P1", True),
        ("domain", "P1", True),
    ]
    texts = [ack_text(env.db, o["ticket"]) for o in out]
    for stranger in texts[:2]:
        assert "Priority: P1 (urgent)" in stranger
        assert "down" not in stranger and "cannot work" not in stranger
    for known in texts[2:]:
        assert "Priority: P1 (critical: a service is down or many people cannot work)" in known


def test_the_ceiling_for_unknown_senders_is_off_by_default_and_caps_only_them(env):
    def messages(run: str) -> tuple[bytes, ...]:
        return (
            msg("buyer@unknown.example", subject=f"URGENT: pricing {run}"),
            msg("Bob Stone <bob.stone@gmail.com>", subject=f"URGENT: pricing too {run}"),
            msg("someone.new@acme.example", subject=f"URGENT: server down {run}"),  # new employee
            msg("jane@acme.example", subject=f"URGENT: server down too {run}"),
            msg("buyer2@unknown.example", subject=f"question {run}", To="urgent@msp.example"),
        )

    queue = '[[queue]]\nname = "urgent"\naddress = "urgent@msp.example"\npriority = "P1"\n'
    env.configure(queue)
    assert [o["priority"] for o in env(*messages("a"))] == ["P1", "P1", "P1", "P1", "P1"]

    env.configure(f'[contacts]\nunknown_ceiling = "P2"\n{queue}')
    out = env(*messages("b"))
    assert [o["priority"] for o in out] == ["P2", "P2", "P1", "P1", "P2"]
    assert ticket_row(env.db, out[0]["ticket"])["priority"] == "P2"
    assert out[0]["due"] != out[3]["due"]  # the deadline follows the capped priority
    explained = CliRunner().invoke(
        cli,
        ["explain", "--config", str(env.config), str(next(env.db.parent.glob("in1/00.eml")))],
    )
    assert "unknown_ceiling" in explained.output


@pytest.mark.parametrize(
    ("value", "problem"),
    [('"P9"', "contacts.unknown_ceiling"), ("2", "contacts.unknown_ceiling")],
)
def test_a_bad_ceiling_is_refused_by_check(env, value, problem):
    env.configure(f"[contacts]\nunknown_ceiling = {value}\n")
    result = CliRunner().invoke(cli, ["check", "--config", str(env.config)])
    assert result.exit_code != 0
    assert problem in result.output and "fix:" in result.output


def test_a_forged_known_address_is_capped_like_a_stranger(env):
    """DMARC failed: the From proves nothing, so the ceiling applies (and no acknowledgement)."""
    env.configure('[contacts]\nunknown_ceiling = "P3"\n')
    forged = msg(
        "jane@acme.example",
        subject="URGENT: wire the money today",
        Authentication_Results="mx.msp.example; dmarc=fail header.from=acme.example",
    )
    genuine = msg("jane@acme.example", subject="URGENT: file server down")
    out = env(forged, genuine)
    assert [(o["priority"], o["auto_reply"]) for o in out] == [("P3", False), ("P1", True)]
