"""Reading a kernel's capabilities: format, configuration sources, initrd modules."""

from __future__ import annotations

import gzip
import lzma
import sqlite3
from pathlib import Path

import pytest

from banger_core.firecracker.transport import choose_transport, parse_version
from banger_core.images import kernelcaps
from banger_core.images.kernelcaps import KernelCaps, detect
from banger_core.lifecycle.machine import MachineSpec
from pytest_banger.kernels import (
    DEBIAN_CONFIG,
    DEBIAN_INITRD_MODULES,
    config_text,
    synthetic_initrd,
    synthetic_kernel,
    synthetic_rootfs,
)


def test_format_by_magic(tmp_path: Path) -> None:
    bz = synthetic_kernel(tmp_path / "bz", fmt="bzimage").read_bytes()
    assert kernelcaps.kernel_format(bz) == "bzimage"
    elf = synthetic_kernel(tmp_path / "elf").read_bytes()
    assert kernelcaps.kernel_format(elf) == "elf"
    assert kernelcaps.kernel_format(b"not really a kernel\n") is None


def test_ikconfig_from_bzimage_payload_and_elf(tmp_path: Path) -> None:
    caps = detect(synthetic_kernel(tmp_path / "bz", fmt="bzimage", version="6.6.1-fc"))
    assert caps.config_source == "kernel (IKCONFIG)"
    assert caps.version == "6.6.1-fc"
    assert caps.transports() == ["mmio-cmdline", "mmio-acpi", "pci"]
    assert caps.ip_pnp is True
    elf = detect(synthetic_kernel(tmp_path / "elf", DEBIAN_CONFIG, fmt="elf"))
    assert elf.format == "elf" and elf.options["VIRTIO_MMIO"] == "m"


def test_ikconfig_wins_over_rootfs_config_and_explicit_file_over_both(tmp_path: Path) -> None:
    """Issue 16 item 3: the kernel's own IKCONFIG first, the rootfs's config only as a fallback."""
    kernel = synthetic_kernel(tmp_path / "k")  # IKCONFIG says: Firecracker config
    rootfs = synthetic_rootfs(
        tmp_path / "root.ext4", DEBIAN_CONFIG, modules=["vmw_vsock_virtio_transport"]
    )
    initrd = synthetic_initrd(tmp_path / "initrd", DEBIAN_INITRD_MODULES)
    caps = detect(kernel, initrd=initrd, rootfs=rootfs)
    assert caps.config_source == "kernel (IKCONFIG)"
    assert caps.ip_pnp is True and caps.feature("virtio_blk") == "built-in"
    explicit = tmp_path / "config"
    explicit.write_text(config_text(DEBIAN_CONFIG))
    caps = detect(kernel, initrd=initrd, rootfs=rootfs, config_file=explicit)
    assert caps.config_source == str(explicit) and caps.ip_pnp is False


def test_rootfs_config_of_the_kernels_own_release(tmp_path: Path) -> None:
    kernel = synthetic_kernel(tmp_path / "k", DEBIAN_CONFIG, embed_config=False)
    rootfs = synthetic_rootfs(
        tmp_path / "root.ext4", DEBIAN_CONFIG, modules=["vmw_vsock_virtio_transport"]
    )
    initrd = synthetic_initrd(tmp_path / "initrd", DEBIAN_INITRD_MODULES)
    caps = detect(kernel, initrd=initrd, rootfs=rootfs)
    assert caps.config_source == "rootfs /boot/config-6.1.0-test-amd64 (the kernel's release)"
    assert caps.summary()["transports"] == ["mmio-acpi", "pci"]
    assert caps.feature("virtio_blk") == "module (initrd)"
    assert caps.feature("vsock") == "module (rootfs)"
    assert caps.ip_pnp is False


def test_rootfs_config_of_another_release_is_not_used(tmp_path: Path) -> None:
    """A kernel of release 6.6.1-fc says nothing with the rootfs's config-6.1.0-test-amd64."""
    for fmt in ("elf", "bzimage"):
        kernel = synthetic_kernel(
            tmp_path / f"k-{fmt}", fmt=fmt, version="6.6.1-fc", embed_config=False
        )
        rootfs = synthetic_rootfs(tmp_path / "root.ext4", DEBIAN_CONFIG)
        caps = detect(kernel, rootfs=rootfs)
        assert caps.version == "6.6.1-fc"
        assert not caps.known and caps.summary()["config"] == "unknown"


def test_modules_count_only_when_the_initrd_has_them(tmp_path: Path) -> None:
    kernel = synthetic_kernel(tmp_path / "k", DEBIAN_CONFIG)
    bare = synthetic_initrd(tmp_path / "bare", ["virtio", "virtio_ring"])
    caps = detect(kernel, initrd=bare)
    assert caps.transports() == []
    problem = caps.boot_problem()
    assert problem is not None
    assert "CONFIG_VIRTIO_MMIO=m but the initrd has no virtio_mmio module" in problem
    assert "\n" not in problem


def test_initrd_formats_and_concatenated_archives(tmp_path: Path) -> None:
    plain = synthetic_initrd(tmp_path / "a", ["virtio_blk"])
    cpio = gzip.decompress(plain.read_bytes())
    early = gzip.decompress(synthetic_initrd(tmp_path / "b", ["intel_microcode"]).read_bytes())
    xz = lzma.compress(cpio, format=lzma.FORMAT_XZ)
    combined = tmp_path / "combined"
    combined.write_bytes(early + b"\0" * 512 + xz)  # early cpio, then a compressed one
    names = kernelcaps.initrd_modules(combined)
    assert {"intel_microcode", "virtio_blk"} <= names
    raw = tmp_path / "raw"
    raw.write_bytes(cpio)
    assert "virtio_blk" in kernelcaps.initrd_modules(raw)
    zst = tmp_path / "zst"
    zst.write_bytes(cpio)
    from banger_core import system

    if system.which("zstd"):
        system.run(["zstd", "-q", "-f", str(zst), "-o", str(tmp_path / "initrd.zst")])
        assert "virtio_blk" in kernelcaps.initrd_modules(tmp_path / "initrd.zst")


def test_old_store_rows_are_unknown_and_keep_todays_behaviour(tmp_path: Path) -> None:
    from banger_core.store.db import SCHEMA_VERSION, open_store
    from banger_core.store.models import Image

    db = tmp_path / "state.db"
    raw = sqlite3.connect(db)  # what banger's v1 schema made
    raw.execute(
        "CREATE TABLE images (id VARCHAR(32) PRIMARY KEY, name VARCHAR(63) UNIQUE, "
        "kernel TEXT, initrd TEXT, rootfs TEXT, work_seed TEXT, managed INTEGER, "
        "os VARCHAR(255), fingerprint VARCHAR(255), created_at REAL)"
    )
    raw.execute("INSERT INTO images VALUES ('i1', 'old', '/k', NULL, '/r', NULL, 0, '', '', 0)")
    raw.execute("PRAGMA user_version = 1")
    raw.commit()
    raw.close()
    store = open_store(db)
    with store.connection_context():
        caps = KernelCaps.from_dict(Image.get_by_id("i1").kernel_caps)
    assert SCHEMA_VERSION >= 2
    assert not caps.known
    assert caps.summary()["transports"] == "unknown"
    assert choose_transport(caps, "auto", (1, 16, 1)) == "mmio"  # what banger always did


def _caps(tmp_path: Path, options: dict[str, str], modules: list[str]) -> KernelCaps:
    kernel = synthetic_kernel(tmp_path / "k", options)
    return detect(kernel, initrd=synthetic_initrd(tmp_path / "i", modules))


def test_transport_choice(tmp_path: Path) -> None:
    debian = _caps(tmp_path, DEBIAN_CONFIG, DEBIAN_INITRD_MODULES)
    assert choose_transport(debian, "auto", (1, 16, 1)) == "mmio"  # ACPI finds the devices
    assert choose_transport(debian, "auto", (1, 13, 0)) == "mmio"
    with pytest.raises(Exception, match=r"ACPI came in v1\.8"):
        choose_transport(debian, "mmio", (1, 7, 0), image="debian")
    no_acpi = _caps(tmp_path, {**DEBIAN_CONFIG, "ACPI": "n"}, DEBIAN_INITRD_MODULES)
    assert choose_transport(no_acpi, "auto", (1, 16, 1)) == "pci"
    assert choose_transport(no_acpi, "pci", (1, 16, 1)) == "pci"
    with pytest.raises(Exception, match=r'transport = "mmio".*CONFIG_ACPI is not set'):
        choose_transport(no_acpi, "mmio", (1, 16, 1), image="debian")
    no_pci = _caps(tmp_path, {**DEBIAN_CONFIG, "PCI": "n"}, DEBIAN_INITRD_MODULES)
    with pytest.raises(Exception, match=r'transport = "pci".*CONFIG_PCI is not set'):
        choose_transport(no_pci, "pci", (1, 16, 1))
    with pytest.raises(Exception, match="no --enable-pci"):
        choose_transport(no_acpi, "pci", (1, 12, 0))
    assert parse_version("Firecracker v1.16.1\n") == (1, 16, 1)


def test_pci_transport_drops_pci_off() -> None:
    machine = MachineSpec(
        vcpus=1, memory_mib=128, kernel="k", boot_args=["console=ttyS0", "pci=off"]
    )
    machine.use_transport("pci")
    assert machine.transport == "pci" and "pci=off" not in machine.boot_args
