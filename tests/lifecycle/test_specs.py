"""Pure pieces of the lifecycle: sizes, names, machine spec, guest config, refs, validation."""

from __future__ import annotations

import pytest

from banger_core.cli.refs import resolve_refs
from banger_core.errors import ValidationError
from banger_core.failpoints import check
from banger_core.guestconfig import MAGIC, GuestConfig, decode
from banger_core.lifecycle.machine import MachineSpec
from banger_core.lifecycle.manager import _parse_signal
from banger_core.lifecycle.validation import check_cpus, check_memory
from banger_core.units import check_vm_name, format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8G", 8 << 30),
        ("512M", 512 << 20),
        ("1.5G", 3 << 29),
        ("4096", 4096),
        ("2GiB", 2 << 30),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "G", "8X", "-1G", "1P", "eight"])
def test_parse_size_rejects(bad):
    with pytest.raises(ValidationError, match="is not a size"):
        parse_size(bad, "disk size")


def test_format_size_round_trips():
    assert format_size(8 << 30) == "8G" and format_size(1536 << 20) == "1536M"


@pytest.mark.parametrize("name", ["a", "web-1", "x" * 63, "0abc"])
def test_dns_label_names(name):
    assert check_vm_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", "a-", "A", "a_b", "x" * 64, "a.b", 5])
def test_bad_names(name):
    with pytest.raises(ValidationError, match="is not valid"):
        check_vm_name(name)


def test_host_limits():
    with pytest.raises(ValidationError, match="cpus 999 is not allowed"):
        check_cpus(999)
    with pytest.raises(ValidationError, match="cpus True"):
        check_cpus(True)
    assert check_memory(512) == 512 and check_memory("1G") == 1024
    with pytest.raises(ValidationError, match="memory '1T' is not allowed"):
        check_memory("1T")


def test_machine_devices_root_first_then_order():
    m = MachineSpec(vcpus=1, memory_mib=128, kernel="k")
    assert m.add_drive("cfg", "c", read_only=True) == "/dev/vda"
    assert m.add_drive("rootfs", "r", is_root=True) == "/dev/vda"
    assert [d.drive_id for d in m.ordered_drives()] == ["rootfs", "cfg"]
    assert m.ordered_drives()[1].guest_device == "/dev/vdb"
    with pytest.raises(ValidationError, match="only letters, digits and underscores"):
        m.add_drive("work-disk", "w")
    with pytest.raises(ValidationError, match="root drive is already attached"):
        m.add_drive("root2", "r2", is_root=True)


def test_guest_config_drive_round_trip(tmp_path):
    g = GuestConfig("box", authorized_keys=["ssh-ed25519 AAAA banger"])
    g.add_mount("/dev/vdc", "/root")
    g.add_file("/etc/motd", "hi\n")
    g.set_plugin("demo", {"x": 1})
    path = g.write_drive(tmp_path / "cfg.img")
    data = path.read_bytes()
    assert data.startswith(MAGIC) and len(data) % 4096 == 0
    doc = decode(data)
    assert doc["version"] == 1 and doc["hostname"] == "box"
    assert doc["mounts"][0]["target"] == "/root" and doc["plugins"] == {"demo": {"x": 1}}
    with pytest.raises(ValidationError, match="two mounts for /root"):
        g.add_mount("/dev/vdd", "/root")
    with pytest.raises(ValidationError, match="must be absolute"):
        g.add_file("etc/x", "")


def test_refs_resolve_dedupe_and_report():
    vms = [{"id": "abc123", "name": "web"}, {"id": "abd999", "name": "api"}]
    got = resolve_refs(["web", "abc", "ab", "nope", "wbe", "api", "abd9"], vms)
    assert [(r, v["name"] if v else None, e) for r, v, e in got] == [
        ("web", "web", ""),
        ("ab", None, "ambiguous: matches web, api"),
        ("nope", None, "no such VM (VMs: api, web)"),
        ("wbe", None, "no such VM (did you mean 'web'? VMs: api, web)"),
        ("api", "api", ""),
    ]


def test_signals():
    assert _parse_signal("SIGTERM") == 15 and _parse_signal("term") == 15
    assert _parse_signal(9) == 9 and _parse_signal("9") == 9
    with pytest.raises(ValidationError, match="not a signal"):
        _parse_signal("SIGFOO")


def test_failpoints(monkeypatch):
    check("boot")
    monkeypatch.setenv("BANGER_FAILPOINTS", "disks, boot")
    with pytest.raises(Exception, match="injected failure at stage 'boot'"):
        check("boot")
    check("network")
