"""When a guest cannot come up, ``vm create`` says which stage failed and shows the console.

Drives the CLI against a daemon on the simulated host with a synthetic kernel
(its embedded configuration decides what the simulated guest kernel can do)
and the tiny root file system, so no Debian image is needed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_banger.fcsim import tiny_rootfs
from pytest_banger.kernels import (
    DEBIAN_CONFIG,
    DEBIAN_INITRD_MODULES,
    FIRECRACKER_CONFIG,
    config_text,
    synthetic_initrd,
    synthetic_kernel,
)
from pytest_banger.simhost import SimulatedHost
from tests.e2e.helpers import assert_nothing_left

pytestmark = [pytest.mark.net]

PCI_ONLY = {**FIRECRACKER_CONFIG, "ACPI": "n", "VIRTIO_MMIO_CMDLINE_DEVICES": "n"}
BOOT_SCRIPT = """#!/bin/sh
echo "tiny-boot: ready"
echo "tiny-boot: cmdline $(cat /proc/cmdline)"
trap 'exit 0' INT
while :; do sleep 0.1; done
"""


def _host(firecracker: str = "") -> Iterator[SimulatedHost]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, TAP and loop devices)")
    with SimulatedHost(tap_pool_size=1) as host:
        text = host.config_path.read_text()
        text = text.replace("[firecracker]\n", f"[firecracker]\n{firecracker}")
        text = text.replace("ssh_timeout_seconds = 60.0", "ssh_timeout_seconds = 4.0")
        host.config_path.write_text(text)
        host.start()
        yield host


@pytest.fixture
def host() -> Iterator[SimulatedHost]:
    yield from _host()


@pytest.fixture
def mmio_host() -> Iterator[SimulatedHost]:
    yield from _host('transport = "mmio"\n')


def _register(
    host: SimulatedHost,
    name: str,
    options: dict[str, str],
    *extra: str,
    initrd_modules: list[str] | None = None,
) -> None:
    files = host.root / name
    files.mkdir()
    args = [
        "image",
        "register",
        name,
        "--kernel",
        str(synthetic_kernel(files / "vmlinuz", options)),
        "--rootfs",
        str(tiny_rootfs(files, BOOT_SCRIPT)),
    ]
    if initrd_modules is not None:
        args += ["--initrd", str(synthetic_initrd(files / "initrd.img", initrd_modules))]
    host.cli(*args, *extra)


def test_guest_that_cannot_find_its_disk_fails_create_fast(
    host: SimulatedHost, tmp_path: Path
) -> None:
    # The user's --kernel-config claims command-line MMIO devices the kernel lacks.
    claimed = tmp_path / "claimed.config"
    claimed.write_text(
        config_text({**DEBIAN_CONFIG, "VIRTIO_MMIO_CMDLINE_DEVICES": "y", "ACPI": "n", "PCI": "n"})
    )
    _register(
        host,
        "lies",
        {**DEBIAN_CONFIG, "ACPI": "n", "PCI": "n"},
        "--kernel-config",
        str(claimed),
        initrd_modules=DEBIAN_INITRD_MODULES,
    )
    res = host.cli("vm", "create", "vm1", "--image", "lies", check=False)
    assert res.returncode != 0
    assert "waiting for SSH" in res.stderr and "FAILED" in res.stderr
    err = res.stderr.strip().splitlines()[-1]
    assert "VM vm1 did not come up (stage: waiting for SSH)" in err
    assert "the guest cannot boot (ALERT!  /dev/vda does not exist.  Dropping to a shell!)" in err
    assert "last console lines:" in err and "Gave up waiting for root file system" in err
    assert "not ready after" not in err  # it failed at once, not after the SSH timeout
    assert_nothing_left(host)


def test_auto_transport_uses_pci_for_a_pci_only_kernel(host: SimulatedHost) -> None:
    _register(host, "pcionly", PCI_ONLY)
    res = host.cli("vm", "create", "vm2", "--image", "pcionly", check=False)
    assert res.returncode != 0  # the tiny guest has no sshd
    err = res.stderr.strip().splitlines()[-1]
    assert "SSH on 172.30.0." in err and "not ready after 4s" in err
    # It booted at all, so the simulator was started with --enable-pci; pci=off is gone.
    assert "tiny-boot: ready" in err
    cmdline = err.split("tiny-boot: cmdline ", 1)[1]
    assert "pci=off" not in cmdline and "console=ttyS0" in cmdline
    assert_nothing_left(host)


def test_forced_transport_the_kernel_cannot_use_is_an_error(mmio_host: SimulatedHost) -> None:
    _register(mmio_host, "pcionly", PCI_ONLY)
    res = mmio_host.cli("vm", "create", "vm3", "--image", "pcionly", check=False)
    assert res.returncode != 0
    assert "boot" in res.stderr and "FAILED" in res.stderr
    err = res.stderr.strip().splitlines()[-1]
    assert '[firecracker] transport = "mmio"' in err
    assert "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is not set" in err
    assert "CONFIG_ACPI is not set" in err
    assert_nothing_left(mmio_host)
