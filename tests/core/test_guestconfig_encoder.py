"""One guest-config encoder, tested against the guest's own decoder and validator."""

from __future__ import annotations

import pytest

from banger_core import GuestConfig, ValidationError
from banger_core.guestconfig import decode
from banger_guest.boot import decode_config, validate_config


def full_config() -> GuestConfig:
    guest = GuestConfig(
        hostname="box",
        authorized_keys=["ssh-ed25519 AAAA banger"],
        nameservers=["172.30.0.1"],
        address="172.30.0.2",
        prefixlen=24,
        gateway="172.30.0.1",
        mac="06:00:ac:1e:00:02",
        mtu=1500,
    )
    guest.add_mount("/dev/vdc", "/root")
    guest.add_mount("/dev/vdd", "/scratch", "ext4", "noatime")
    guest.add_file("/etc/motd", "hello\n", "0600")
    guest.set_plugin("dns", {"search": ["vm"]})
    return guest


def test_the_guest_decodes_exactly_what_the_core_encodes() -> None:
    guest = full_config()
    data = guest.encode()
    assert len(data) % 4096 == 0
    doc = decode_config(data)  # the guest's decoder, as banger-boot runs it
    assert doc == guest.document()
    validate_config(doc, source="test")
    assert decode(data) == doc


def test_a_bad_fragment_fails_on_the_host_naming_it() -> None:
    guest = GuestConfig(hostname="box")
    guest.mounts.append({"device": "", "target": "/data", "fstype": "ext4", "options": "defaults"})
    with pytest.raises(ValidationError, match=r"^guest config: .*mounts\[0\] needs 'device'"):
        guest.encode()


def test_decode_refuses_what_is_not_a_config_drive() -> None:
    with pytest.raises(ValidationError, match="not a banger guest-config drive"):
        decode(b"\0" * 4096)


def test_mounts_reach_the_guest_shallowest_first_whatever_the_plugin_order() -> None:
    """A share at /root/app added before the work disk's /root is not hidden by it."""
    guest = GuestConfig(hostname="box")
    guest.add_mount("/dev/vde", "/root/app/cache")  # plugin order: deepest first
    guest.add_mount("/dev/vdd", "/root/app")
    guest.add_mount("/dev/vdf", "/srv")
    guest.add_mount("/dev/vdc", "/root")
    doc = decode_config(guest.encode())  # what banger-boot mounts, in its order
    assert [m["target"] for m in doc["mounts"]] == ["/srv", "/root", "/root/app", "/root/app/cache"]
