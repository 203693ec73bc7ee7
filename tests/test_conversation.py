"""Threading: message ids prove a conversation; a guessed ticket number does not."""

from __future__ import annotations

import pytest

from triage.core.conversation import TicketRef, find_thread, ticket_number, token_pattern
from triage.core.message import Email

from .conftest import human

T1 = TicketRef(
    "T-000001", "jane@acme.example", frozenset({"jane@acme.example", "bob@acme.example"}), "Acme"
)


class Lookup:
    """A dict-backed Threads, so the rule is tested without a database."""

    def __init__(self, by_id: dict[str, TicketRef], tickets: list[TicketRef]) -> None:
        self.by_id = by_id
        self.tickets = {t.number: t for t in tickets}

    def ticket_for_message_ids(self, ids):
        return next((self.by_id[i] for i in ids if i in self.by_id), None)

    def ticket_by_number(self, number):
        return self.tickets.get(number)


THREADS = Lookup({"<first@mail.acme.example>": T1, "<ack@triage.invalid>": T1}, [T1])


def thread(company: str | None = None, forged: bool = False, **headers):
    """`company`: the company the sender is shown to belong to (a verified contact's, or an
    authenticated domain's); `forged`: the From failed authentication."""
    e = Email.from_bytes(human(**headers))
    return find_thread(e, THREADS, "T-", company=company, forged=forged)


def test_in_reply_to_a_stored_customer_message_from_its_author_appends():
    t = thread(In_Reply_To="<first@mail.acme.example>", Message_ID="<second@x>")
    assert t.ticket == T1 and t.linked is None


def test_a_stored_message_id_from_a_stranger_opens_a_linked_ticket():
    """Issue 12.2: a Message-ID proves the sender saw a message, not that they are on the ticket."""
    t = thread(
        References="<zzz@elsewhere> <ack@triage.invalid>",
        From="someone@gmail.com",
        Message_ID="<2@x>",
    )
    assert t.ticket is None and t.linked == T1
    assert "not on that ticket" in t.why


def test_token_from_a_participant_appends():
    t = thread(Subject="Re: [#T-000001] Printer", From="bob@acme.example", Message_ID="<3@x>")
    assert t.ticket == T1


def test_token_from_a_verified_contact_of_the_company_appends():
    t = thread("Acme", Subject="[#T-1] Printer", From="carol@acme.example", Message_ID="<4@x>")
    assert t.ticket == T1
    t = thread("Acme", In_Reply_To="<first@mail.acme.example>", From="carol@acme.example")
    assert t.ticket == T1


@pytest.mark.parametrize("company", [None, "Globex"])
def test_the_requesters_domain_alone_is_no_company(company):
    """carol@ the requester's domain, but not shown to be Acme: a new ticket, linked."""
    t = thread(company, Subject="[#T-1] Printer", From="carol@acme.example", Message_ID="<4@x>")
    assert t.ticket is None and t.linked == T1


def test_token_alone_from_a_stranger_opens_a_linked_ticket():
    t = thread(
        Subject="Re: [#T-000001] give me access", From="mallory@gmail.com", Message_ID="<5@x>"
    )
    assert t.ticket is None and t.linked == T1


@pytest.mark.parametrize(
    "headers",
    [
        {"Subject": "Re: [#T-000001] Printer"},
        {"In_Reply_To": "<first@mail.acme.example>"},
    ],
)
def test_a_from_that_failed_authentication_never_appends(headers):
    """Jane is the requester, but this mail's From failed DMARC: it may be anyone."""
    t = thread("Acme", forged=True, Message_ID="<9@x>", **headers)
    assert t.ticket is None and t.linked == T1
    assert "failed authentication" in t.why


def test_unknown_token_and_no_reference_open_a_fresh_ticket():
    assert thread(Subject="[#T-999999] hi", Message_ID="<7@x>").ticket is None
    assert thread(Message_ID="<8@x>").ticket is None


def test_prefix_is_configurable_and_numbers_are_six_digits():
    assert ticket_number("HD-", 42) == "HD-000042"
    assert token_pattern("HD-").search("Re: [#HD-000042] x").group(1) == "000042"
    assert token_pattern("HD-").search("Re: [#T-000042] x") is None


def test_a_localized_reply_prefix_alone_is_no_proof_and_explain_says_so():
    t = thread(Subject="AW: WG: Drucker im Büro", Message_ID="<9@x>")
    assert t.ticket is None and t.linked is None
    assert "AW: WG:" in t.why


def test_a_token_behind_localized_prefixes_still_threads():
    t = thread(Subject="AW: WG: [#T-000001] Drucker", From="bob@acme.example", Message_ID="<10@x>")
    assert t.ticket == T1
