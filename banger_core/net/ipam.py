"""IPv4 address management for the VM bridge subnet (pure, no I/O).

The bridge owns the gateway address; every VM gets one host address of the
subnet, a MAC derived from it (Firecracker's ``06:00:<ipv4 bytes>``
convention), and a kernel ``ip=`` boot argument that configures ``eth0``
before userspace starts.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from banger_core.errors import ConflictError, ValidationError

# Kernel ip= fields are ':'-separated; a hostname is one DNS label here.
_HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", re.IGNORECASE)
_DEVICE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def _parse_ipv4(value: str, what: str) -> ipaddress.IPv4Address:
    try:
        addr = ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise ValidationError(f"{what} {value!r} is not an IPv4 address (e.g. 172.30.0.5)")
    if not isinstance(addr, ipaddress.IPv4Address):
        raise ValidationError(f"{what} {value!r} is IPv6; only IPv4 is supported")
    return addr


class Subnet:
    """An IPv4 subnet for VMs plus the gateway address the bridge holds.

    ``Subnet("172.30.0.0/24")`` uses the first host (172.30.0.1) as gateway.
    The prefix must leave room for a gateway and at least one VM (/30 or
    wider). Raises :class:`ValidationError` naming the bad value.
    """

    def __init__(self, cidr: str, gateway: str | None = None) -> None:
        text = str(cidr).strip()
        if "/" not in text:
            raise ValidationError(f"subnet {cidr!r} needs a prefix length, e.g. 172.30.0.0/24")
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValidationError(f"subnet {cidr!r} is not a valid IPv4 CIDR (e.g. 172.30.0.0/24)")
        if not isinstance(network, ipaddress.IPv4Network):
            raise ValidationError(f"subnet {cidr!r} is IPv6; only IPv4 is supported")
        if str(network) != text:
            raise ValidationError(f"subnet {cidr!r} has host bits set; did you mean {network}?")
        if network.prefixlen > 30:
            raise ValidationError(
                f"subnet {cidr!r} is too small; use a prefix length of /30 or shorter"
            )
        if gateway is None:
            gw = network.network_address + 1
        else:
            gw = _parse_ipv4(gateway, "gateway")
            if gw not in network or gw in (network.network_address, network.broadcast_address):
                raise ValidationError(
                    f"gateway {gateway!r} is not a host address of {network} "
                    f"({network.network_address + 1} to {network.broadcast_address - 1})"
                )
        self.network: ipaddress.IPv4Network = network
        self._gateway: ipaddress.IPv4Address = gw

    @property
    def cidr(self) -> str:
        """The subnet as ``a.b.c.d/n``."""
        return str(self.network)

    @property
    def gateway(self) -> str:
        """The gateway (bridge) address."""
        return str(self._gateway)

    @property
    def prefixlen(self) -> int:
        """The prefix length, e.g. 24."""
        return self.network.prefixlen

    @property
    def netmask(self) -> str:
        """The dotted netmask, e.g. ``255.255.255.0``."""
        return str(self.network.netmask)

    @property
    def gateway_cidr(self) -> str:
        """The gateway with prefix (``172.30.0.1/24``), as the bridge address."""
        return f"{self._gateway}/{self.network.prefixlen}"

    @property
    def host_count(self) -> int:
        """Number of usable host addresses (the gateway included)."""
        return self.network.num_addresses - 2

    def contains(self, ip: str) -> bool:
        """True when ``ip`` is a host address of this subnet (not network/broadcast)."""
        try:
            addr = ipaddress.IPv4Address(str(ip).strip())
        except ValueError:
            return False
        return (
            addr in self.network
            and addr != self.network.network_address
            and addr != self.network.broadcast_address
        )

    def __repr__(self) -> str:
        return f"Subnet({self.cidr!r}, gateway={self.gateway!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Subnet):
            return NotImplemented
        return self.network == other.network and self._gateway == other._gateway

    def __hash__(self) -> int:
        return hash((self.network, self._gateway))


def allocate(subnet: Subnet, used: Iterable[str]) -> str:
    """Return the lowest free host address of ``subnet``.

    Never the network, gateway or broadcast address, nor anything in
    ``used`` (addresses outside the subnet are ignored). Raises
    :class:`ConflictError` when the subnet is full.
    """
    taken = {subnet._gateway}
    for item in used:
        addr = _parse_ipv4(item, "used address")
        if addr in subnet.network:
            taken.add(addr)
    for host in subnet.network.hosts():
        if host not in taken:
            return str(host)
    in_use = sum(1 for a in taken if subnet.contains(str(a)))
    raise ConflictError(f"no free address in {subnet.cidr} ({in_use} in use)")


def mac_for_ip(ip: str) -> str:
    """Return the guest MAC for ``ip``: ``06:00:`` plus the four IPv4 bytes.

    ``172.30.0.5`` gives ``06:00:ac:1e:00:05`` (locally administered, unicast).
    """
    addr = _parse_ipv4(ip, "IP address")
    return "06:00:" + ":".join(f"{b:02x}" for b in addr.packed)


def kernel_ip_arg(
    ip: str, gateway: str, prefixlen: int, hostname: str, device: str = "eth0"
) -> str:
    """Build the kernel ``ip=`` boot argument configuring ``device`` statically.

    Format: ``ip=<client>::<gateway>:<netmask>:<hostname>:<device>:off``
    (no NFS server, autoconfiguration off).
    """
    client = _parse_ipv4(ip, "IP address")
    gw = _parse_ipv4(gateway, "gateway")
    if isinstance(prefixlen, bool) or not isinstance(prefixlen, int) or not 0 < prefixlen <= 32:
        raise ValidationError(f"prefix length {prefixlen!r} must be an integer from 1 to 32")
    if not _HOSTNAME_RE.match(hostname or ""):
        raise ValidationError(
            f"hostname {hostname!r} must be a DNS label "
            "(letters, digits and '-', 1-63 chars, not starting or ending with '-')"
        )
    if not _DEVICE_RE.match(device or ""):
        raise ValidationError(
            f"device {device!r} must be an interface name of 1-15 letters, digits, '_', '.', '-'"
        )
    netmask = ipaddress.IPv4Network(f"0.0.0.0/{prefixlen}").netmask
    return f"ip={client}::{gw}:{netmask}:{hostname}:{device}:off"
