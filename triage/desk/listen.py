"""HOST:PORT for the desk's servers (`triage web --listen`, `[daemon] metrics_listen`).

Loopback unless the operator writes another address: the page shows customers' mail and is
meant to sit behind a reverse proxy that authenticates (docs/desk.md).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from triage.errors import TriageError


class ListenError(TriageError, ValueError):
    """A listen address that cannot be used; the message names where it came from and the fix."""


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, where: str = "--listen", default_port: int = 8001) -> Listen:
        """`127.0.0.1:8001`, `[::1]:8001`, `localhost:8001` or `8001` (loopback) -> Listen.

        `where` names the option or config key in the error (e.g. `triage.toml: [daemon]
        metrics_listen`).
        """
        raw = str(text).strip()
        fix = f"fix: write HOST:PORT, e.g. 127.0.0.1:{default_port}"
        if not raw:
            raise ListenError(f"{where}: empty; {fix}")
        if raw.isdigit():
            host, port_text = "127.0.0.1", raw
        elif raw.startswith("["):
            host, sep, port_text = raw[1:].partition("]:")
            if not sep:
                raise ListenError(f"{where}: {raw!r} has no port after ]; {fix}")
        else:
            host, sep, port_text = raw.rpartition(":")
            if not sep or ":" in host:
                raise ListenError(f"{where}: {raw!r} is not HOST:PORT; {fix} ([::1]:PORT for IPv6)")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ListenError(f"{where}: {port_text!r} is not a port (1-65535); {fix}")
        if host != "localhost":
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ListenError(
                    f"{where}: {host!r} is not an IP address; {fix} (a name other than"
                    " localhost could resolve anywhere)"
                ) from None
        return cls(host, int(port_text))

    @property
    def loopback(self) -> bool:
        return self.host == "localhost" or ipaddress.ip_address(self.host).is_loopback

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
