"""banger-boot brings up the guest's NIC itself (kernels without IP_PNP ignore ``ip=``).

Each test runs the standalone boot.py inside a network namespace it creates
(and always deletes), on a veth standing in for the virtio NIC.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from banger_core.guestconfig import GuestConfig
from banger_guest import boot

pytestmark = [pytest.mark.net]

BOOT_DIR = str(Path(boot.__file__).parent)
MAC = "06:00:ac:1e:00:05"

APPLY = """
import json, sys
sys.path.insert(0, sys.argv[1])
import boot
boot.INTERFACE_WAIT_SECONDS = float(sys.argv[3])
boot.Applier("/", system=True).interface(json.loads(sys.argv[2]))
"""


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    name = f"bgr-test-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _ip(ns: str, *args: str) -> str:
    return subprocess.run(
        ["ip", "-n", ns, *args], check=True, capture_output=True, text=True
    ).stdout


def _apply(ns: str, cfg: dict, wait: float = 2.0) -> str:
    proc = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            "-I",
            "-c",
            APPLY,
            BOOT_DIR,
            json.dumps(cfg),
            str(wait),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _guest_doc() -> dict:
    """The document the core writes for a VM (what the guest really receives)."""
    return GuestConfig(
        hostname="vm1",
        nameservers=["172.30.0.1"],
        address="172.30.0.5",
        prefixlen=24,
        gateway="172.30.0.1",
        mac=MAC,
        mtu=1400,
    ).document()


def test_core_writes_what_the_guest_needs() -> None:
    net = _guest_doc()["network"]
    assert net == {
        "interface": "eth0",
        "address": "172.30.0.5",
        "prefix": 24,
        "gateway": "172.30.0.1",
        "mac": MAC,
        "mtu": 1400,
        "nameservers": ["172.30.0.1"],
    }
    boot.validate_config(_guest_doc())


def test_configures_nic_found_by_mac(netns: str) -> None:
    # A PCI transport names the NIC enp0sN under udev: the MAC finds it anyway.
    _ip(netns, "link", "add", "enp0s2", "address", MAC, "type", "veth", "peer", "name", "peer0")
    out = _apply(netns, _guest_doc())
    assert "banger-boot: network enp0s2 172.30.0.5/24 mtu 1400" in out
    assert "default route via 172.30.0.1" in out
    addr = _ip(netns, "-o", "-4", "addr", "show", "dev", "enp0s2")
    assert "inet 172.30.0.5/24" in addr
    link = _ip(netns, "link", "show", "dev", "enp0s2")
    assert "mtu 1400" in link and ",UP" in link
    assert "default via 172.30.0.1 dev enp0s2" in _ip(netns, "-4", "route")


def test_already_configured_interface_is_kept(netns: str) -> None:
    # What the kernel's ip= leaves on an IP_PNP kernel (or the simulator for one).
    _ip(netns, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    _ip(netns, "addr", "add", "172.30.0.5/24", "dev", "eth0")
    _ip(netns, "link", "set", "eth0", "up")
    _ip(netns, "route", "add", "default", "via", "172.30.0.1", "dev", "eth0")
    doc = _guest_doc()
    doc["network"].pop("mac")
    out = _apply(netns, doc)
    assert "network eth0 already configured (172.30.0.5/24); keeping it" in out
    assert "default route already set; keeping it" in out
    assert "error" not in out
    addrs = _ip(netns, "-o", "-4", "addr", "show", "dev", "eth0").count("inet ")
    assert addrs == 1


def test_missing_interface_is_reported_not_fatal(netns: str) -> None:
    out = _apply(netns, _guest_doc(), wait=0.3)
    assert f"banger-boot: error: no network interface {MAC} after 0s" in out


def test_no_address_means_no_network_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    boot.Applier(str(tmp_path), system=False).interface({"network": {"nameservers": ["1.1.1.1"]}})
    assert capsys.readouterr().out == ""


def test_find_interface_by_mac_then_name(tmp_path: Path) -> None:
    for name, mac in (("eth0", "06:00:00:00:00:01"), ("enp0s3", "06:00:00:00:00:02")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "address").write_text(mac + "\n")
    assert boot.find_interface("06:00:00:00:00:02", "eth0", str(tmp_path)) == "enp0s3"
    assert boot.find_interface("06:00:00:00:00:09", "eth0", str(tmp_path)) == "eth0"
    assert boot.find_interface(None, "eth1", str(tmp_path)) is None


def test_load_modules_skipped_on_host_kernel(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BANGER_GUEST_HOST_KERNEL", "1")
    calls: list[list[str]] = []
    monkeypatch.setattr(boot.subprocess, "run", lambda argv, **kw: calls.append(argv))
    boot.load_modules()
    assert calls == []
    assert capsys.readouterr().out == ""


def test_load_modules_tolerates_absent_modules(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BANGER_GUEST_HOST_KERNEL", raising=False)
    monkeypatch.setattr(boot.os.path, "isdir", lambda p: True)
    calls: list[list[str]] = []

    def fake_run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 1, "", "FATAL: Module not found")

    monkeypatch.setattr(boot.subprocess, "run", fake_run)
    boot.load_modules()
    assert calls == [
        ["modprobe", "-q", "virtio_net"],
        ["modprobe", "-q", "vmw_vsock_virtio_transport"],
    ]
    out = capsys.readouterr().out
    assert "modprobe virtio_net: not available" in out
    assert "error" not in out
