"""Issue 16 item 1: a bzImage is registered with its format, refused at launch by a Firecracker
that loads only ELF (one line: the kernel file, the VMM version, the fix), and
``banger image convert-kernel`` gives the image the ELF vmlinux inside it.

Drives the CLI against a daemon on the simulated host (banger-fcsim answers
``--version`` with 1.16.1, whose ``load_kernel`` in upstream
``src/vmm/src/arch/x86_64/mod.rs`` @ v1.16.1 uses only ``linux_loader::loader::elf::Elf``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_banger.fcsim import tiny_rootfs
from pytest_banger.kernels import synthetic_kernel
from pytest_banger.simhost import SimulatedHost
from tests.e2e.helpers import assert_nothing_left

pytestmark = [pytest.mark.net]

BOOT_SCRIPT = """#!/bin/sh
echo "tiny-boot: ready"
trap 'exit 0' INT
while :; do sleep 0.1; done
"""


@pytest.fixture
def host() -> Iterator[SimulatedHost]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, TAP and loop devices)")
    with SimulatedHost(tap_pool_size=1) as host:
        text = host.config_path.read_text()
        text = text.replace("ssh_timeout_seconds = 60.0", "ssh_timeout_seconds = 4.0")
        host.config_path.write_text(text)
        host.start()
        yield host


def _register(host: SimulatedHost, name: str, kernel: Path) -> str:
    res = host.cli(
        "image",
        "register",
        name,
        "--kernel",
        str(kernel),
        "--rootfs",
        str(tiny_rootfs(kernel.parent, BOOT_SCRIPT)),
    )
    return res.stdout


def test_bzimage_is_recorded_refused_at_launch_and_converted(host: SimulatedHost) -> None:
    files = host.root / "bz"
    files.mkdir()
    # Debian's 6.1 cloud kernel is a bzImage with an LZ4 (legacy frame) payload.
    kernel = synthetic_kernel(files / "vmlinuz", fmt="bzimage", compression="lz4")
    out = _register(host, "bz", kernel)
    assert "note: the kernel is a bzimage; Firecracker v1.16.1 cannot load it: run " in out
    assert "`banger image convert-kernel bz`" in out

    listed = host.json("image", "list")
    assert listed[0]["kernel_format"] == {
        "format": "bzimage",
        "vmm_version": "v1.16.1",
        "loads": False,
    }
    shown = host.cli("image", "show", "bz").stdout
    assert (
        "kernel fmt:  bzimage (Firecracker v1.16.1 cannot load it: run "
        "`banger image convert-kernel bz`)"
    ) in shown
    doctor = host.cli("doctor", check=False).stdout
    line = next(ln for ln in doctor.splitlines() if "image bz kernel" in ln)
    assert not line.startswith("ok") and f"kernel {kernel} of image 'bz' is a bzImage" in line

    res = host.cli("vm", "create", "vm1", "--image", "bz", check=False)
    assert res.returncode != 0
    err = res.stderr.strip().splitlines()
    assert len([ln for ln in err if "bzImage" in ln]) == 1
    assert err[-1].endswith(
        f"kernel {kernel} of image 'bz' is a bzImage; Firecracker v1.16.1 loads only an ELF "
        "vmlinux (bzImage needs 1.17/main): run `banger image convert-kernel bz`"
    ), err
    assert "internal error" not in res.stderr
    assert host.json("vm", "list") == []
    assert_nothing_left(host)

    converted = host.cli("image", "convert-kernel", "bz").stdout
    assert f"image bz: kernel {kernel} converted to " in converted
    assert "(elf (Firecracker v1.16.1 loads it))" in converted
    info = host.json("image", "show", "bz")
    new_kernel = Path(info["kernel"])
    assert new_kernel.read_bytes()[:4] == b"\x7fELF"
    assert new_kernel.read_bytes() == synthetic_kernel(files / "elf").read_bytes()
    assert info["kernel_format"]["loads"] is True and info["kernel_caps"]["format"] == "elf"
    assert kernel.read_bytes()[0x202:0x206] == b"HdrS"  # the user's file is left alone
    again = host.cli("image", "convert-kernel", "bz").stdout
    assert f"kernel {new_kernel} is already an ELF vmlinux" in again

    # Now it boots (the tiny guest has no sshd: SSH times out after the console says so).
    res = host.cli("vm", "create", "vm1", "--image", "bz", check=False)
    assert "tiny-boot: ready" in res.stderr, res.stderr
    host.cli("vm", "delete", "vm1", check=False)
    host.cli("image", "delete", "bz")
    assert not new_kernel.exists() and kernel.exists()


def test_convert_kernel_refuses_a_payload_that_does_not_load(host: SimulatedHost) -> None:
    files = host.root / "bad"
    files.mkdir()
    kernel = synthetic_kernel(files / "vmlinuz", fmt="bzimage", broken="elf-phentsize")
    _register(host, "bad", kernel)
    before = host.json("image", "show", "bad")
    res = host.cli("image", "convert-kernel", "bad", check=False)
    assert res.returncode != 0
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert f"kernel {kernel}: its vmlinux does not load:" in err
    assert "Invalid program header size" in err
    assert host.json("image", "show", "bad") == before
    res = host.cli("image", "convert-kernel", "nosuch", check=False)
    assert res.returncode != 0 and "no image 'nosuch'" in res.stderr
