"""Certificates for private servers: self-signed for localhost and 127.0.0.1."""

from __future__ import annotations

import os
import ssl
import subprocess
from pathlib import Path

from tests.support.procs import find_tool


def make_cert(directory: Path, name: str = "cert") -> tuple[Path, Path]:
    """A self-signed certificate for CN localhost, SAN DNS:localhost and IP:127.0.0.1 (EC P-256,
    made by `openssl req -x509`). Returns (cert_file, key_file); the cert is also the CA to trust."""
    openssl = find_tool("openssl")
    if openssl is None:
        raise RuntimeError("openssl not installed")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "3650",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    os.chmod(cert, 0o644)
    os.chmod(key, 0o600)
    return cert, key


def client_ssl_context(ca_file: str | os.PathLike[str]) -> ssl.SSLContext:
    """A verifying client context that trusts only `ca_file` (hostname checked)."""
    return ssl.create_default_context(cafile=str(ca_file))
