"""Egress allow-list entries: ``CIDR`` or ``CIDR:PORT``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from banger_core import ValidationError


@dataclass(frozen=True)
class Egress:
    """One allowed destination: a network, and optionally one port (TCP and UDP)."""

    network: str
    port: int | None = None

    def __str__(self) -> str:
        return self.network if self.port is None else f"{self.network}:{self.port}"


def parse(text: str, where: str = "egress allow") -> Egress:
    """``"203.0.113.0/24"``, ``"203.0.113.10:443"`` -> :class:`Egress`.

    :raise ValidationError: naming the entry and what is allowed.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(
            f"{where}: {text!r} is not CIDR or CIDR:PORT "
            "(e.g. 203.0.113.0/24 or 203.0.113.10/32:443)"
        )
    network, _, port = text.strip().partition(":")
    try:
        net = ipaddress.IPv4Network(network, strict=False)
    except ValueError:
        raise ValidationError(
            f"{where}: {text!r} is not CIDR or CIDR:PORT "
            "(e.g. 203.0.113.0/24 or 203.0.113.10/32:443)"
        ) from None
    number: int | None = None
    if port:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValidationError(f"{where}: {text!r}: port {port!r} must be 1-65535")
        number = int(port)
    return Egress(str(net), number)


def parse_all(entries: list[str], where: str) -> list[Egress]:
    """Parse every entry (the first bad one raises); duplicates are dropped."""
    out: list[Egress] = []
    for entry in entries:
        parsed = parse(entry, where)
        if parsed not in out:
            out.append(parsed)
    return out
