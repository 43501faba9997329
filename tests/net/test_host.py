"""Bridge and TAP management, for real, inside a throwaway network namespace."""

from __future__ import annotations

import pytest
from pyroute2 import IPRoute

from banger_core.errors import ConflictError, NotFoundError, ValidationError
from banger_core.net import host

pytestmark = pytest.mark.net


def _addrs(netns: str, name: str) -> set[str]:
    with IPRoute(netns=netns) as ipr:
        index = ipr.link_lookup(ifname=name)[0]
        return {
            f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=index, family=2)
        }


def _state(netns: str, name: str) -> tuple[str, dict]:
    with IPRoute(netns=netns) as ipr:
        link = ipr.get_links(ifname=name)[0]
        data = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
        tun = dict(data["attrs"]) if data else {}
        return link.get("IFLA_OPERSTATE"), {"flags": link["flags"], **tun}


def test_ensure_bridge_creates_and_is_idempotent(netns: str) -> None:
    host.ensure_bridge("bgrbr0", "172.30.0.1/24", netns=netns)
    host.ensure_bridge("bgrbr0", "172.30.0.1/24", netns=netns)
    assert host.link_exists("bgrbr0", netns=netns)
    assert _addrs(netns, "bgrbr0") == {"172.30.0.1/24"}
    _, info = _state(netns, "bgrbr0")
    assert info["flags"] & 1  # IFF_UP
    # a second address is added, the first one kept
    host.ensure_bridge("bgrbr0", "172.31.0.1/24", netns=netns)
    assert _addrs(netns, "bgrbr0") == {"172.30.0.1/24", "172.31.0.1/24"}


def test_bridge_mac_is_fixed_when_taps_come_and_go(netns: str) -> None:
    host.ensure_bridge("bgrbr0", "172.30.0.1/24", netns=netns)

    def mac() -> str:
        with IPRoute(netns=netns) as ipr:
            return ipr.get_links(ifname="bgrbr0")[0].get_attr("IFLA_ADDRESS")

    assert mac() == "06:00:ac:1e:00:01"
    for name in ("bgrtap0", "bgrtap1"):  # ports with random (often lower) MACs
        host.create_tap(name, "bgrbr0", netns=netns)
        assert mac() == "06:00:ac:1e:00:01"
    host.delete_link("bgrtap0", netns=netns)
    host.ensure_bridge("bgrbr0", "172.30.0.1/24", netns=netns)
    assert mac() == "06:00:ac:1e:00:01"


def test_ensure_bridge_refuses_non_bridge(netns: str, bridge: str) -> None:
    host.create_tap("bgrtap9", bridge, netns=netns)
    with pytest.raises(ConflictError, match="'bgrtap9' already exists and is not a bridge"):
        host.ensure_bridge("bgrtap9", "172.30.0.1/24", netns=netns)


@pytest.mark.parametrize("bad", ["172.30.0.1", "fd00::1/64", "x/24"])
def test_ensure_bridge_bad_address(netns: str, bad: str) -> None:
    with pytest.raises(ValidationError, match=repr(bad)):
        host.ensure_bridge("bgrbr0", bad, netns=netns)
    assert not host.link_exists("bgrbr0", netns=netns)


def test_create_tap_attaches_and_is_idempotent(netns: str, bridge: str) -> None:
    host.create_tap("bgrtap0", bridge, owner_uid=1234, netns=netns)
    host.create_tap("bgrtap0", bridge, owner_uid=1234, netns=netns)
    assert host.bridge_of("bgrtap0", netns=netns) == bridge
    _, info = _state(netns, "bgrtap0")
    assert info["IFLA_TUN_TYPE"] == 2  # tap
    assert info["IFLA_TUN_PERSIST"] == 1
    assert info["IFLA_TUN_PI"] == 0
    assert info["IFLA_TUN_OWNER"] == 1234
    assert info["flags"] & 1  # IFF_UP
    assert host.list_links("bgrtap", netns=netns) == ["bgrtap0"]


def test_create_tap_reattaches_detached_tap(netns: str, bridge: str) -> None:
    host.create_tap("bgrtap0", bridge, netns=netns)
    with IPRoute(netns=netns) as ipr:
        index = ipr.link_lookup(ifname="bgrtap0")[0]
        ipr.link("set", index=index, master=0, state="down")
    assert host.bridge_of("bgrtap0", netns=netns) is None
    host.create_tap("bgrtap0", bridge, netns=netns)
    assert host.bridge_of("bgrtap0", netns=netns) == bridge
    assert _state(netns, "bgrtap0")[1]["flags"] & 1


def test_create_tap_errors(netns: str, bridge: str) -> None:
    with pytest.raises(NotFoundError, match="bridge 'nobridge' does not exist"):
        host.create_tap("bgrtap0", "nobridge", netns=netns)
    host.create_tap("bgrtap1", bridge, netns=netns)
    with pytest.raises(ConflictError, match="'bgrtap1' is not a bridge"):
        host.create_tap("bgrtap0", "bgrtap1", netns=netns)
    # the bridge itself is not a TAP
    with pytest.raises(ConflictError, match=f"'{bridge}' already exists and is not a TAP"):
        host.create_tap(bridge, bridge, netns=netns)
    assert host.list_links("bgrtap", netns=netns) == ["bgrtap1"]


@pytest.mark.parametrize("bad", ["", "a" * 16, "tap 0", "tap/0", ".."])
def test_interface_names_validated(bad: str) -> None:
    with pytest.raises(ValidationError, match="interface name"):
        host.validate_ifname(bad)
    with pytest.raises(ValidationError):
        host.create_tap(bad, "bgrbr0", netns="unused")


def test_name_of_15_chars_is_fine(netns: str, bridge: str) -> None:
    name = "bgrtap012345678"
    assert len(name) == 15
    host.create_tap(name, bridge, netns=netns)
    assert host.link_exists(name, netns=netns)


def test_delete_link_ignores_missing(netns: str, bridge: str) -> None:
    host.create_tap("bgrtap0", bridge, netns=netns)
    assert host.delete_link("bgrtap0", netns=netns) is True
    assert host.delete_link("bgrtap0", netns=netns) is False
    assert not host.link_exists("bgrtap0", netns=netns)
    with pytest.raises(NotFoundError, match="'bgrtap0' does not exist"):
        host.bridge_of("bgrtap0", netns=netns)


def test_list_links_prefix(netns: str, bridge: str) -> None:
    for name in ("bgrtap2", "bgrtap10", "other0"):
        host.create_tap(name, bridge, netns=netns)
    assert host.list_links("bgrtap", netns=netns) == ["bgrtap10", "bgrtap2"]
    assert "lo" in host.list_links(netns=netns)
    assert host.bridge_of(bridge, netns=netns) is None
