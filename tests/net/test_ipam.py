"""IP allocation, MAC derivation and the kernel ip= argument (pure)."""

from __future__ import annotations

import pytest

from banger_core.errors import ConflictError, ValidationError
from banger_core.net import ipam


def test_subnet_defaults_gateway_to_first_host() -> None:
    s = ipam.Subnet("172.30.0.0/24")
    assert s.gateway == "172.30.0.1"
    assert s.prefixlen == 24
    assert s.netmask == "255.255.255.0"
    assert s.gateway_cidr == "172.30.0.1/24"
    assert s.cidr == "172.30.0.0/24"
    assert s.host_count == 254


def test_subnet_explicit_gateway() -> None:
    s = ipam.Subnet("10.9.0.0/16", gateway="10.9.255.254")
    assert s.gateway == "10.9.255.254"
    assert ipam.allocate(s, set()) == "10.9.0.1"


@pytest.mark.parametrize(
    ("cidr", "gateway", "fragment"),
    [
        ("172.30.0.0", None, "needs a prefix length"),
        ("172.30.0.5/24", None, "did you mean 172.30.0.0/24"),
        ("nonsense/24", None, "not a valid IPv4 CIDR"),
        ("fd00::/64", None, "IPv6"),
        ("172.30.0.0/31", None, "too small"),
        ("172.30.0.0/24", "172.30.1.1", "not a host address of 172.30.0.0/24"),
        ("172.30.0.0/24", "172.30.0.255", "not a host address"),
        ("172.30.0.0/24", "172.30.0.0", "not a host address"),
        ("172.30.0.0/24", "gw", "not an IPv4 address"),
    ],
)
def test_subnet_validation_names_the_value(cidr: str, gateway: str | None, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        ipam.Subnet(cidr, gateway)
    assert fragment in str(info.value)
    assert repr(gateway if "gateway" in str(info.value) else cidr) in str(info.value)


def test_allocate_lowest_free_skipping_gateway_and_used() -> None:
    s = ipam.Subnet("172.30.0.0/24")
    assert ipam.allocate(s, set()) == "172.30.0.2"
    assert ipam.allocate(s, {"172.30.0.2", "172.30.0.3"}) == "172.30.0.4"
    assert ipam.allocate(s, {"172.30.0.3"}) == "172.30.0.2"
    # addresses outside the subnet do not matter
    assert ipam.allocate(s, {"10.0.0.2"}) == "172.30.0.2"


def test_allocate_with_non_first_gateway() -> None:
    s = ipam.Subnet("172.30.0.0/29", gateway="172.30.0.6")
    used: set[str] = set()
    for _ in range(5):
        used.add(ipam.allocate(s, used))
    assert used == {f"172.30.0.{i}" for i in range(1, 6)}
    with pytest.raises(ConflictError, match=r"no free address in 172.30.0.0/29 \(6 in use\)"):
        ipam.allocate(s, used)


def test_allocate_full_subnet() -> None:
    s = ipam.Subnet("172.30.0.0/24")
    used = {f"172.30.0.{i}" for i in range(2, 255)}
    with pytest.raises(ConflictError) as info:
        ipam.allocate(s, used)
    assert str(info.value) == "no free address in 172.30.0.0/24 (254 in use)"


def test_allocate_never_network_or_broadcast() -> None:
    s = ipam.Subnet("172.30.0.0/30")
    assert ipam.allocate(s, set()) == "172.30.0.2"
    with pytest.raises(ConflictError, match=r"\(2 in use\)"):
        ipam.allocate(s, {"172.30.0.2", "172.30.0.0", "172.30.0.3"})


def test_allocate_rejects_garbage_in_used() -> None:
    with pytest.raises(ValidationError, match="'bogus'"):
        ipam.allocate(ipam.Subnet("172.30.0.0/24"), {"bogus"})


def test_mac_for_ip() -> None:
    assert ipam.mac_for_ip("172.30.0.5") == "06:00:ac:1e:00:05"
    assert ipam.mac_for_ip("10.255.1.200") == "06:00:0a:ff:01:c8"
    with pytest.raises(ValidationError, match=r"'1\.2\.3'"):
        ipam.mac_for_ip("1.2.3")


def test_kernel_ip_arg() -> None:
    assert (
        ipam.kernel_ip_arg("172.30.0.5", "172.30.0.1", 24, "devbox")
        == "ip=172.30.0.5::172.30.0.1:255.255.255.0:devbox:eth0:off"
    )
    assert (
        ipam.kernel_ip_arg("10.0.0.9", "10.0.0.1", 20, "a-1", device="ens3")
        == "ip=10.0.0.9::10.0.0.1:255.255.240.0:a-1:ens3:off"
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("172.30.0.5", "172.30.0.1", 33, "vm"), "prefix length 33"),
        (("172.30.0.5", "172.30.0.1", 24, "bad:name"), "hostname 'bad:name'"),
        (("172.30.0.5", "172.30.0.1", 24, "-x"), "hostname '-x'"),
        (("172.30.0.5", "nope", 24, "vm"), "gateway 'nope'"),
        (("x", "172.30.0.1", 24, "vm"), "IP address 'x'"),
    ],
)
def test_kernel_ip_arg_validation(args: tuple, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        ipam.kernel_ip_arg(*args)
    with pytest.raises(ValidationError, match="device 'eth0:1'"):
        ipam.kernel_ip_arg("172.30.0.5", "172.30.0.1", 24, "vm", device="eth0:1")
