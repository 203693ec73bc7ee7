"""Configured folder names become the server's names by its NAMESPACE answer (RFC 2342)."""

from __future__ import annotations

import pytest

from triage.sources.imap.namespace import Namespace, listed, same_folder

CYRUS = b'(("INBOX." ".")) (("user." ".")) (("" "."))'  # Cyrus 3.6, Debian's default layout
DOVECOT = b'(("" ".")) NIL NIL'  # Dovecot 2.3, Maildir++ layout, no prefix
DOVECOT_INBOX = b'(("INBOX." ".")) NIL NIL'  # Dovecot with namespace inbox { prefix = INBOX. }
SLASH = b'(("" "/")) NIL NIL'  # a server that separates levels with "/"
EXTENDED = b'(("" "/" "X-PARAM" ("FLAG1" "FLAG2"))) NIL (("#shared/" "/"))'  # RFC 2342 ext.


@pytest.mark.parametrize(
    ("answer", "prefix", "delimiter", "others"),
    [
        (CYRUS, "INBOX.", ".", ("user.", "")),
        (DOVECOT, "", ".", ()),
        (DOVECOT_INBOX, "INBOX.", ".", ()),
        (SLASH, "", "/", ()),
        (EXTENDED, "", "/", ("#shared/",)),
        (b'(("" NIL)) NIL NIL', "", "", ()),  # a flat server: no hierarchy at all
        (b'(("Mail\\\\Box\\"/" "/")) NIL NIL', 'Mail\\Box"/', "/", ()),  # quoted escapes
    ],
)
def test_the_personal_namespace_is_read_from_the_answer(answer, prefix, delimiter, others):
    assert Namespace.from_response(answer) == Namespace(prefix, delimiter, others)


@pytest.mark.parametrize(
    "answer", [b"NIL NIL NIL", b"", b'(("INBOX." ".")', b"((", b'))("x" ".")', b"(NIL)"]
)
def test_an_answer_without_a_readable_personal_namespace_gives_none(answer):
    assert Namespace.from_response(answer) is None


# (answer, configured name, the server's full name)
@pytest.mark.parametrize(
    ("answer", "name", "full"),
    [
        (CYRUS, "Triage/Processed", "INBOX.Triage.Processed"),  # the prefix is added
        (CYRUS, "INBOX", "INBOX"),  # INBOX is INBOX everywhere
        (CYRUS, "inbox", "INBOX"),
        (CYRUS, "INBOX.Triage.Processed", "INBOX.Triage.Processed"),  # an explicit full name
        (CYRUS, "INBOX/Triage/Processed", "INBOX.Triage.Processed"),  # ... written with "/"
        (CYRUS, "inbox.Done", "inbox.Done"),  # INBOX matches in any case
        (CYRUS, "user.ops.Triage", "user.ops.Triage"),  # another user's folder, as written
        (CYRUS, "INBOXES/x", "INBOX.INBOXES.x"),  # only INBOX and its levels are INBOX
        (DOVECOT, "Triage/Processed", "Triage.Processed"),
        (DOVECOT, "INBOX", "INBOX"),
        (DOVECOT_INBOX, "Triage/Errors", "INBOX.Triage.Errors"),
        (DOVECOT_INBOX, "Support", "INBOX.Support"),  # the watched folder too
        (SLASH, "Triage/Processed", "Triage/Processed"),
        (EXTENDED, "#shared/Triage", "#shared/Triage"),
    ],
)
def test_a_configured_name_becomes_the_servers_full_name(answer, name, full):
    namespace = Namespace.from_response(answer)
    assert namespace is not None
    assert namespace.full_name(name) == full


def test_without_namespace_the_list_delimiter_is_used_with_no_prefix():
    assert Namespace.from_delimiter(".").full_name("Triage/Processed") == "Triage.Processed"
    assert Namespace.from_delimiter("").full_name("Triage/Processed") == "Triage/Processed"


@pytest.mark.parametrize(
    ("answer", "full", "levels"),
    [
        (CYRUS, "INBOX.Triage.Processed", ["INBOX.Triage", "INBOX.Triage.Processed"]),
        (DOVECOT, "Triage.Processed", ["Triage", "Triage.Processed"]),
        (DOVECOT, "Errors", ["Errors"]),
        (CYRUS, "user.ops.T", ["user", "user.ops", "user.ops.T"]),
    ],
)
def test_the_levels_to_create_stop_at_the_prefix(answer, full, levels):
    namespace = Namespace.from_response(answer)
    assert namespace is not None
    assert namespace.levels(full) == levels


def test_list_lines_give_flags_delimiter_and_name():
    lines = [
        b'(\\HasNoChildren) "." INBOX.Triage.Processed',
        b'(\\Noselect \\HasChildren) "/" "Triage/Pro\\"x"',
        b"() NIL Flat",
        b'(\\HasNoChildren) "\\\\" Back',
        b'(\\HasNoChildren) "." {12}',  # a name sent as a literal: the next line
        bytearray(b'Odd "name" x'),
        b"List completed (0.001 secs).",
    ]
    assert listed(lines) == [
        ("\\hasnochildren", ".", "INBOX.Triage.Processed"),
        ("\\noselect \\haschildren", "/", 'Triage/Pro"x'),
        ("", "", "Flat"),
        ("\\hasnochildren", "\\", "Back"),
        ("\\hasnochildren", ".", 'Odd "name" x'),
    ]


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("INBOX.Done", "INBOX.Done", True),
        ("inbox.Done", "INBOX.Done", True),  # INBOX in any case
        ("INBOX.done", "INBOX.Done", False),  # the other levels exactly
        ("Triage.Processed", "triage.processed", False),
    ],
)
def test_folder_names_compare_with_inbox_in_any_case(a, b, same):
    assert same_folder(a, b) is same
