"""The private Cyrus IMAP of tests/support/cyrus.py: Debian's layout, imaps with its own CA,
its own processes only, and nothing left when it stops."""

from __future__ import annotations

import imaplib
import os

import pytest

from tests.support import cyrus, procs

from . import servers

pytestmark = pytest.mark.skipif(cyrus.skip_reason() is not None, reason=cyrus.skip_reason() or "")


def test_an_instance_serves_debians_layout_over_imaps_and_leaves_nothing(tmp_path):
    server = cyrus.Cyrus.start(tmp_path)
    try:
        assert server.root.stat().st_mode & 0o777 == 0o755
        context = servers.client_ssl_context(server.ca_file)
        m = imaplib.IMAP4_SSL(server.host, server.tls_port, ssl_context=context, timeout=10)
        try:
            assert m.login("support", "secret")[0] == "OK"
            assert m.namespace() == ("OK", [b'(("INBOX." ".")) (("user." ".")) (("" "."))'])
            assert m.create('"Triage.Processed"')[0] == "NO"  # outside the prefix: refused
        finally:
            m.logout()
        uid = servers.append(server, "support", "INBOX", b"Subject: x\r\n\r\nhi\r\n")
        assert uid == 1 and servers.count(server, "support", "INBOX") == 1
        mine = procs.descendants(server.pid)
        assert mine and all(str(server.config_path) in " ".join(procs.cmdline(p)) for p, _ in mine)
    finally:
        server.cleanup()
    assert not any(procs.alive(*p) for p in mine)
    assert not server.root.exists() and not os.path.lexists(tmp_path / server.root.name)


def test_a_wrong_password_is_refused(tmp_path):
    with cyrus.Cyrus.start(tmp_path) as server:
        m = imaplib.IMAP4(server.host, server.port, timeout=10)
        try:
            with pytest.raises(imaplib.IMAP4.error):
                m.login("support", "not-it")
        finally:
            m.shutdown()
