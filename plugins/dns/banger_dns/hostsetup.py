"""``banger dns setup``: send the host's ``.vm`` lookups to banger's server.

With systemd-resolved, the bridge link gets the gateway listener as its DNS
server and ``~vm`` as a routing-only domain (what libvirt and Docker do):
only ``*.vm`` goes there, everything else keeps its usual path. Without
resolved, the exact lines for dnsmasq or a plain resolv.conf are printed.
Runs in the CLI, on the host, as root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def resolved_running(runtime_dir: Path) -> bool:
    """Whether systemd-resolved runs (its runtime directory has its files)."""
    return (runtime_dir / "resolv.conf").exists() or (runtime_dir / "io.systemd.Resolve").exists()


def target(info: dict[str, Any]) -> str:
    """The server the host should ask for ``.vm``: the gateway listener, else ``listen``."""
    return str(info.get("gateway") or info["listen"])


def resolved_commands(info: dict[str, Any], resolvectl: str, *, undo: bool) -> list[list[str]]:
    """The ``resolvectl`` calls that (un)route ``~vm`` to banger on the bridge link."""
    link = str(info["bridge"])
    if undo:
        return [[resolvectl, "revert", link]]
    return [
        [resolvectl, "dns", link, target(info)],
        [resolvectl, "domain", link, f"~{info['domain']}"],
        [resolvectl, "default-route", link, "false"],
    ]


def manual_lines(info: dict[str, Any]) -> str:
    """What to add to dnsmasq or resolv.conf when there is no systemd-resolved."""
    listen = str(info["listen"])
    host, _, port = listen.rpartition(":")
    lines = [
        "systemd-resolved is not running; configure your resolver by hand:",
        "",
        "  dnsmasq (e.g. /etc/dnsmasq.d/banger.conf, then restart dnsmasq):",
        f"    server=/{info['domain']}/{host}#{port}",
    ]
    if info.get("gateway"):
        lines += [
            "",
            "  plain /etc/resolv.conf (first line; the gateway listener forwards other names):",
            f"    nameserver {info['gateway']}",
        ]
    return "\n".join(lines)
