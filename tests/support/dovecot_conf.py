"""The files of a private Dovecot (tests/support/dovecot.py), its dovecot.conf above all: its own
instance name, folders and log, listeners on 127.0.0.1 only, a passwd-file of test users,
and optionally an INBOX.-prefixed namespace, OAuth 2.0 logins and an auth socket for Postfix."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.certs import make_cert
from tests.support.net import HOST
from tests.support.procs import find_tool

if TYPE_CHECKING:
    from tests.support.dovecot import Dovecot


def mail_ids() -> tuple[int, int]:
    """The uid and gid mail is accessed as: nobody and nogroup (Dovecot refuses root)."""
    try:
        uid = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        uid = 65534
    for group in ("nogroup", "nobody"):
        try:
            return uid, grp.getgrnam(group).gr_gid
        except KeyError:
            continue
    return uid, 65534


def prepare(dc: Dovecot) -> None:
    """Write the instance's files (maildir and home folders, passwd-file, certificate, config)
    and have doveconf check the config."""
    root = dc.root
    uid, gid = mail_ids()
    for d in (dc.maildir_root, dc.home_root):
        d.mkdir(exist_ok=True)
        os.chown(d, uid, gid)
        os.chmod(d, 0o755)
    for user in dc.users:
        home = dc.home_root / user
        home.mkdir(exist_ok=True)
        os.chown(home, uid, gid)
    passwd = root / "passwd"
    passwd.write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in dc.users.items()))
    os.chmod(passwd, 0o644)  # read by the auth process (user dovecot)
    if dc.tls and dc.ca_file is None:
        cert, _key = make_cert(root, "imap")
        dc.ca_file = cert
    dc.config_path.write_text(render(dc, uid, gid, passwd))
    check = subprocess.run(
        [find_tool("doveconf") or "doveconf", "-c", str(dc.config_path), "-n"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if check.returncode != 0:
        raise RuntimeError(f"doveconf rejected {dc.config_path}:\n{check.stderr}")


def render(dc: Dovecot, uid: int, gid: int, passwd: Path) -> str:
    """The whole config file for `dc`, its mail accessed as uid:gid."""
    lines = [
        "# Private test instance written by tests/support/dovecot.py",
        f"instance_name = {dc.instance_name}",
        f"base_dir = {dc.base_dir}",
        f"state_dir = {dc.state_dir}",
        f"log_path = {dc.log_path}",
        f"info_log_path = {dc.log_path}",
        "protocols = imap",
        *([f"default_process_limit = {dc.process_limit}"] if dc.process_limit else []),
        "listen = 127.0.0.1",
        "disable_plaintext_auth = no",
        "auth_mechanisms = plain login" + (" xoauth2 oauthbearer" if dc.tokens else ""),
        # a failed login is answered in about 0.5 s (Dovecot's default delay is 2 s)
        "auth_failure_delay = 0",
        "first_valid_uid = 1",
        f"mail_location = maildir:{dc.maildir_root}/%u",
        "mail_fsync = never",
        # IDLE: Dovecot notices changes by inotify; this is the fallback poll
        "mailbox_idle_check_interval = 1 secs",
        "passdb {",
        "  driver = passwd-file",
        f"  args = scheme=PLAIN {passwd}",
        *(["  mechanisms = plain login"] if dc.tokens else []),
        "}",
        *(oauth2_passdb(dc.root, dc.tokens.url) if dc.tokens else []),
        "userdb {",
        "  driver = static",
        f"  args = uid={uid} gid={gid} home={dc.home_root}/%u",
        "}",
        *(
            ["service auth {", "  unix_listener auth-relay {", "    mode = 0666", "  }", "}"]
            if dc.auth_socket
            else []
        ),
        "protocol imap {",
        "  mail_max_userip_connections = 50",
        "}",
        *namespace(dc.namespace_prefix),
        "service imap-login {",
        "  inet_listener imap {",
        "    address = 127.0.0.1",
        f"    port = {dc.port}",
        "  }",
        "  inet_listener imaps {",
        "    address = 127.0.0.1",
        f"    port = {dc.tls_port or 0}",
        "    ssl = yes",
        "  }",
        "}",
    ]
    if dc.tls:
        lines += ["ssl = yes", f"ssl_cert = <{dc.ca_file}", f"ssl_key = <{dc.root / 'imap.key'}"]
    else:
        lines += ["ssl = no"]
    return "\n".join(lines) + "\n"


def namespace(prefix: str) -> list[str]:
    """The inbox namespace's lines when it has a prefix (Maildir++: ".")."""
    if not prefix:
        return []
    return ["namespace inbox {", "  inbox = yes", f"  prefix = {prefix}", "  separator = .", "}"]


def oauth2_passdb(root: Path, introspection_url: str) -> list[str]:
    """The oauth2 passdb's lines, after writing its args file in `root`.

    Without tokeninfo_url Dovecot goes straight to introspection; it POSTs token=... and
    accepts the token when the JSON answer has active = true and a username equal to the
    login name (username_format %Lu: lower-cased). `mechanisms` keeps each passdb to its
    own mechanisms: a token is never tried as a password, nor a password as a token."""
    args = root / "oauth2.conf.ext"
    args.write_text(
        "\n".join(
            [
                "# OAuth 2.0 passdb of a private test instance (tests/support/dovecot.py)",
                "introspection_mode = post",
                f"introspection_url = {introspection_url}",
                "username_attribute = username",
                "active_attribute = active",
                "active_value = true",
                "timeout_msecs = 5000",
            ]
        )
        + "\n"
    )
    # Dovecot's per-IP auth penalty grows with each refused token (a refused password
    # counts once per password): 2, 4, 8, then 15 s before every later login from
    # 127.0.0.1. A first passdb that only adds nodelay=yes for 127.0.0.1 (the recipe in
    # Dovecot's 2.3 upgrade notes) answers a refused token at once and leaves the penalty
    # alone, so a client retrying a dead token sees the same answer each time.
    nodelay = root / "oauth2-nodelay"
    nodelay.write_text(f"{HOST}:::::::nodelay=yes\n")
    for path in (args, nodelay):
        os.chmod(path, 0o644)  # read by the auth process (user dovecot)
    return [
        "passdb {",
        "  driver = passwd-file",
        f"  args = username_format=%{{rip}} {nodelay}",
        "  default_fields = noauthenticate=y",
        "  mechanisms = xoauth2 oauthbearer",
        "}",
        "passdb {",
        "  driver = oauth2",
        "  mechanisms = xoauth2 oauthbearer",
        f"  args = {args}",
        "}",
    ]
