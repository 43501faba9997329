"""Kernel loading at InstanceStart, per release, the same on every back-end.

Upstream (the judge): Firecracker ``src/vmm/src/builder.rs`` @ v1.7.0 / v1.8.0
(``StartMicrovmError::KernelLoader``), ``src/vmm/src/arch/x86_64/mod.rs`` @
v1.13.0 / v1.16.1 (``load_kernel``: ``linux_loader::loader::elf::Elf`` only) and
@ main (ELF, then on ``InvalidElfMagicNumber`` the bzImage loader;
``BzImageMissing64BitEntry``); linux-loader ``src/loader/elf/mod.rs`` @ v0.13.2,
``src/loader/bzimage/mod.rs`` @ v0.14.0, ``src/loader/mod.rs`` @ v0.10.0 / v0.13.2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_banger.fcsim import raw_request
from pytest_banger.kernels import LOADER_RULES, synthetic_kernel

from .conftest import REPORTED, Backend

pytestmark = pytest.mark.net

OLD = (
    "Start microvm error: Cannot load kernel due to invalid memory configuration or "
    "invalid kernel image: Kernel Loader: failed to load ELF kernel image"
)
"""v1.7/v1.8: linux-loader v0.10/v0.11 print no inner error; no ConfigureSystem layer."""
NEW = (
    "Start microvm error: System configuration error: Cannot load kernel due to invalid "
    "memory configuration or invalid kernel image: Kernel Loader: "
)
"""v1.13+: ``ConfigureSystem(KernelLoader(...))`` with linux-loader v0.13's inner text."""


def elf_refusal(version: str, reason: str) -> str:
    """What an ELF loader refusal reads like on ``version``."""
    if version in ("1.7", "1.8"):
        return OLD
    return f"{NEW}failed to load ELF kernel image: Kernel Loader: {reason}"


def bzimage_refusal(reason: str) -> str:
    """What main's bzImage loader refusals read like."""
    if reason == "bzImage does not provide a 64-bit entry point":
        return f"Start microvm error: System configuration error: {reason}"
    if reason == "invalid kernel start address":
        return f"{NEW}{reason}"
    return f"{NEW}failed to load bzImage kernel image: Kernel Loader: {reason}"


def instance_start(sock: Path, kernel: Path, mem_mib: int = 128) -> tuple[int, str]:
    """Configure ``kernel`` and InstanceStart; ``(status, fault_message or "")``."""
    for path, body in (
        ("/machine-config", {"vcpu_count": 1, "mem_size_mib": mem_mib}),
        (
            "/boot-source",
            {"kernel_image_path": str(kernel), "boot_args": "console=ttyS0 panic=1 reboot=k"},
        ),
    ):
        status, _, resp = raw_request(sock, "PUT", path, json.dumps(body))
        assert status == 204, resp
    status, _, body = raw_request(
        sock, "PUT", "/actions", json.dumps({"action_type": "InstanceStart"})
    )
    return status, json.loads(body).get("fault_message", "") if body.strip() else ""


def test_version_is_the_emulated_release(backend: Backend) -> None:
    assert backend.run("--version").stdout.strip() == f"Firecracker v{REPORTED[backend.version]}"
    sock = backend.start()
    status, _, body = raw_request(sock, "GET", "/version")
    assert status == 200
    assert json.loads(body) == {"firecracker_version": REPORTED[backend.version]}


def test_refused_kernels_leave_the_vm_not_started(backend: Backend) -> None:
    """One process, several refused kernels: each answers 400 and changes nothing."""
    tmp = backend.tmp
    junk = tmp / "junk"
    junk.write_bytes(b"not really a kernel\n" * 100)
    debian_like = synthetic_kernel(tmp / "vmlinuz", fmt="bzimage", compression="lz4")
    cases: list[tuple[Path, int, str]] = []
    if backend.version == "main":
        cases.append((junk, 400, bzimage_refusal("Invalid bzImage")))
    else:
        cases.append((junk, 400, elf_refusal(backend.version, "Invalid Elf magic number")))
        cases.append((debian_like, 400, elf_refusal(backend.version, "Invalid Elf magic number")))
    for rule, reason in LOADER_RULES.items():
        kernel = synthetic_kernel(tmp / f"k-{rule}", broken=rule)
        if rule.startswith("elf-"):
            expected = elf_refusal(backend.version, reason)
        elif backend.version == "main":
            expected = bzimage_refusal(reason)
        else:  # released Firecracker: every bzImage fails the ELF magic check
            expected = elf_refusal(backend.version, "Invalid Elf magic number")
        if rule in ("elf-magic", "bzimage-magic") and backend.version == "main":
            # No ELF magic: main hands the file to the bzImage loader, which finds no HdrS.
            expected = bzimage_refusal("Invalid bzImage")
        cases.append((kernel, 400, expected))
    # The ELF's PT_LOAD starts at 16 MiB: 16 MiB of guest memory cannot hold it.
    small = synthetic_kernel(tmp / "vmlinux-small")
    sock = backend.start()
    for kernel, status, fault in cases:
        got = instance_start(sock, kernel)
        assert got == (status, fault), kernel.name
    assert instance_start(sock, small, mem_mib=16) == (
        400,
        elf_refusal(backend.version, "Unable to read kernel image"),
    )
    status, _, body = raw_request(sock, "GET", "/")
    assert json.loads(body)["state"] == "Not started"


@pytest.mark.parametrize("fmt", ["elf", "bzimage"])
def test_loadable_kernel_starts(backend: Backend, fmt: str) -> None:
    """An ELF vmlinux starts on every release; a bzImage only on main."""
    kernel = synthetic_kernel(backend.tmp / f"kernel-{fmt}", fmt=fmt, compression="lz4")
    sock = backend.start()
    status, fault = instance_start(sock, kernel)
    if fmt == "bzimage" and backend.version != "main":
        assert (status, fault) == (400, elf_refusal(backend.version, "Invalid Elf magic number"))
    else:
        assert (status, fault) == (204, ""), backend.output()


def test_elf_without_pvh_note(backend: Backend) -> None:
    """Firecracker enters it at e_entry (LinuxBoot); banger-fcqemu refuses it.

    QEMU boots an ELF vmlinux only through its PVH entry (a documented difference).
    """
    kernel = synthetic_kernel(backend.tmp / "vmlinux-nopvh", pvh=False)
    sock = backend.start()
    status, fault = instance_start(sock, kernel)
    if backend.name == "banger-fcqemu":
        assert status == 400
        assert "banger-fcqemu cannot boot the ELF kernel" in fault and "PVH" in fault
    else:
        assert (status, fault) == (204, ""), backend.output()


def test_enable_pci_exists_from_v1_13(backend: Backend) -> None:
    """``--enable-pci`` came with v1.13.0 (fc ``CHANGELOG.md`` 1.13.0, #5364)."""
    if backend.version in ("1.7", "1.8"):
        res = backend.run("--api-sock", str(backend.tmp / "x.sock"), "--enable-pci")
        assert res.returncode == 153
        assert "Found argument 'enable-pci' which wasn't expected" in res.stdout
    else:
        sock = backend.start("--enable-pci")
        assert raw_request(sock, "GET", "/version")[0] == 200


@pytest.mark.slow
def test_the_debian_bzimage_is_refused_with_upstreams_text(backend: Backend) -> None:
    """Done-when of issue 16: the Debian 6.1 cloud kernel's bzImage (LZ4) itself, taken from
    the built image's /boot, fails InstanceStart on released Firecracker; main loads it."""
    if backend.version not in ("1.16.1", "main"):
        pytest.skip("one released version and main are enough for the real kernel")
    from banger_core import system
    from pytest_banger.images import cached_debian_image

    image = cached_debian_image()
    listing = system.run(["debugfs", "-R", "ls -p /boot", str(image.rootfs)]).stdout
    names = [p.split("/")[5] for p in listing.splitlines() if "/vmlinuz-" in p]
    assert names, listing
    bzimage = backend.tmp / names[0]
    system.run(["debugfs", "-R", f"dump /boot/{names[0]} {bzimage}", str(image.rootfs)])
    assert bzimage.read_bytes()[0x202:0x206] == b"HdrS"
    sock = backend.start()
    status, fault = instance_start(sock, bzimage, mem_mib=256)
    if backend.version == "main":
        assert (status, fault) == (204, "")
    else:
        assert (status, fault) == (400, elf_refusal("1.16.1", "Invalid Elf magic number"))
    # The image's own kernel, the vmlinux banger exported from that bzImage, loads.
    sock = backend.start()
    assert instance_start(sock, image.kernel, mem_mib=256) == (204, "")
