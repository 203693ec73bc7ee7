"""HOST:PORT for `triage web --listen` and `[daemon] metrics_listen`: loopback by default."""

from __future__ import annotations

import pytest

from triage.desk.listen import Listen, ListenError


@pytest.mark.parametrize(
    ("text", "host", "port", "loopback"),
    [
        ("127.0.0.1:8001", "127.0.0.1", 8001, True),
        ("8001", "127.0.0.1", 8001, True),  # a bare port stays on loopback
        ("localhost:9108", "localhost", 9108, True),
        ("[::1]:9108", "::1", 9108, True),
        (" 0.0.0.0:80 ", "0.0.0.0", 80, False),
        ("192.0.2.7:8001", "192.0.2.7", 8001, False),
    ],
)
def test_parse(text: str, host: str, port: int, loopback: bool):
    got = Listen.parse(text)
    assert (got.host, got.port, got.loopback) == (host, port, loopback)


def test_str_gives_back_what_can_be_parsed():
    for text in ("127.0.0.1:8001", "[::1]:9108"):
        assert str(Listen.parse(text)) == text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("127.0.0.1", "is not HOST:PORT"),
        ("::1:80", "is not HOST:PORT"),
        ("[::1]80", "has no port"),
        ("127.0.0.1:0", "is not a port"),
        ("127.0.0.1:65536", "is not a port"),
        ("127.0.0.1:http", "is not a port"),
        ("desk.example:8001", "is not an IP address"),  # a name could resolve anywhere
    ],
)
def test_errors_name_where_and_the_fix(text: str, problem: str):
    where = "triage.toml: [daemon] metrics_listen"
    with pytest.raises(ListenError) as err:
        Listen.parse(text, where=where, default_port=9108)
    message = str(err.value)
    assert message.startswith(f"{where}: ")
    assert problem in message
    assert "fix: write HOST:PORT, e.g. 127.0.0.1:9108" in message
