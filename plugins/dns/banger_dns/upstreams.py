"""Which resolvers the guests' forwarder asks: the host's own, from resolv.conf.

When the host's resolv.conf names only systemd-resolved's stub
(127.0.0.53 / 127.0.0.54), the real upstream servers are in resolved's
``/run/systemd/resolve/resolv.conf``: the stub is loopback of the host and
would not answer a daemon in another network namespace, and asking it from
the forwarder would only add a hop.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

STUBS = {"127.0.0.53", "127.0.0.54"}
RESOLVED_UPSTREAMS = Path("/run/systemd/resolve/resolv.conf")


def parse_resolv_conf(text: str) -> list[str]:
    """The IPv4 ``nameserver`` addresses of a resolv.conf, in order."""
    servers = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                address = ipaddress.ip_address(fields[1].split("%", 1)[0])
            except ValueError:
                continue
            if address.version == 4 and str(address) not in servers:
                servers.append(str(address))
    return servers


def host_upstreams(resolv_conf: Path, resolved: Path = RESOLVED_UPSTREAMS) -> list[str]:
    """The host's upstream resolvers (resolved's real ones behind its stub)."""
    try:
        servers = parse_resolv_conf(resolv_conf.read_text())
    except OSError:
        return []
    if servers and all(s in STUBS for s in servers):
        try:
            real = [s for s in parse_resolv_conf(resolved.read_text()) if s not in STUBS]
        except OSError:
            real = []
        return real
    return servers


def parse_server(text: str, default_port: int = 53) -> tuple[str, int]:
    """``"1.2.3.4"`` or ``"1.2.3.4:5353"`` -> ``("1.2.3.4", 5353)``; ValueError when bad."""
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    address = ipaddress.IPv4Address(host)
    number = int(port) if port else default_port
    if not 0 < number < 65536:
        raise ValueError(f"port {number} out of range")
    return str(address), number
