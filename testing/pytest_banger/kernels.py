"""Cheap synthetic guest kernels, initrds and root file systems for tests.

A real kernel is tens of MB and the simulator never runs it; it reads its
format and configuration, like Firecracker's loader and the guest kernel
would. These helpers make files that pass exactly those checks:

* :func:`synthetic_kernel` writes a bzImage (``HdrS`` at 0x202, a version
  string, a gzip payload holding an ``IKCFG_ST`` configuration like
  ``CONFIG_IKCONFIG=y`` kernels) or an ELF (``\\x7fELF`` + IKCONFIG), a few KB.
* :func:`synthetic_initrd` writes a gzip newc cpio holding empty ``.ko`` files.
* :data:`FIRECRACKER_CONFIG` is a microVM kernel's configuration (everything
  built in, ``IP_PNP``); :data:`DEBIAN_CONFIG` is Debian's cloud kernel's
  (virtio as modules, no command-line MMIO devices, no ``IP_PNP``).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

FIRECRACKER_CONFIG = {
    "ACPI": "y",
    "PCI": "y",
    "VIRTIO": "y",
    "VIRTIO_MMIO": "y",
    "VIRTIO_MMIO_CMDLINE_DEVICES": "y",
    "VIRTIO_PCI": "y",
    "VIRTIO_BLK": "y",
    "VIRTIO_NET": "y",
    "VSOCKETS": "y",
    "VIRTIO_VSOCKETS": "y",
    "IP_PNP": "y",
    "EXT4_FS": "y",
    "SERIAL_8250_CONSOLE": "y",
    "IKCONFIG": "y",
}
"""A kernel built for Firecracker: every driver built in, ``ip=`` honoured."""

DEBIAN_CONFIG = {
    "ACPI": "y",
    "PCI": "y",
    "VIRTIO": "m",
    "VIRTIO_MMIO": "m",
    "VIRTIO_MMIO_CMDLINE_DEVICES": "n",
    "VIRTIO_PCI": "m",
    "VIRTIO_BLK": "m",
    "VIRTIO_NET": "m",
    "VSOCKETS": "m",
    "VIRTIO_VSOCKETS": "m",
    "IP_PNP": "n",
    "EXT4_FS": "y",
    "SERIAL_8250_CONSOLE": "y",
    "IKCONFIG": "n",
}
"""Debian bookworm's linux-image-cloud-amd64 (measured, see PROBES.md)."""

DEBIAN_INITRD_MODULES = [
    "virtio",
    "virtio_ring",
    "virtio_mmio",
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "vsock",
]
"""What Debian's initrd carries (no vsock transport)."""


def config_text(options: dict[str, str]) -> str:
    """A ``.config`` for ``options`` (``"n"`` becomes ``# CONFIG_X is not set``)."""
    lines = ["# synthetic kernel configuration (banger tests)"]
    for key, value in options.items():
        lines.append(f"# CONFIG_{key} is not set" if value == "n" else f"CONFIG_{key}={value}")
    return "\n".join(lines) + "\n"


def _ikconfig(options: dict[str, str]) -> bytes:
    return b"IKCFG_ST" + gzip.compress(config_text(options).encode(), mtime=0) + b"IKCFG_ED"


def synthetic_kernel(
    path: str | Path,
    options: dict[str, str] | None = None,
    *,
    fmt: str = "bzimage",
    version: str = "6.1.0-test-amd64",
    embed_config: bool = True,
) -> Path:
    """Write a small kernel file Firecracker's loader checks would accept.

    ``fmt`` is ``bzimage`` or ``elf``; ``options`` (default
    :data:`FIRECRACKER_CONFIG`) is embedded as IKCONFIG unless
    ``embed_config`` is False.
    """
    options = FIRECRACKER_CONFIG if options is None else options
    inner = (
        b"\x7fELF\x02\x01\x01"
        + b"\0" * 57
        + f"Linux version {version} (banger-test) #1 SMP\n".encode()
        + b"\0" * 64
        + (_ikconfig(options) if embed_config else b"")
    )
    path = Path(path)
    if fmt == "elf":
        path.write_bytes(inner)
        return path
    if fmt != "bzimage":
        raise ValueError(f"fmt {fmt!r} is not bzimage or elf")
    setup_sects = 1
    setup = bytearray(512 * (setup_sects + 1))
    setup[0x1F1] = setup_sects
    setup[0x1FE:0x200] = b"\x55\xaa"
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x020F)  # boot protocol 2.15
    banner = f"{version} (banger-test) #1 SMP".encode() + b"\0"
    struct.pack_into("<H", setup, 0x20E, 0x300 - 0x200)  # kernel_version string offset
    setup[0x300 : 0x300 + len(banner)] = banner
    payload = gzip.compress(inner, mtime=0)
    struct.pack_into("<II", setup, 0x248, 0, len(payload))  # payload_offset, payload_length
    path.write_bytes(bytes(setup) + payload + b"\0" * 16)
    return path


def _cpio_entry(name: str, data: bytes, mode: int) -> bytes:
    encoded = name.encode() + b"\0"
    header = b"070701" + b"".join(
        f"{v:08x}".encode() for v in (0, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
    )
    out = header + encoded
    out += b"\0" * (-len(out) % 4)
    out += data + b"\0" * (-len(data) % 4)
    return out


def synthetic_initrd(
    path: str | Path, modules: list[str], *, version: str = "6.1.0-test-amd64"
) -> Path:
    """Write a gzip newc cpio initrd holding empty ``<module>.ko`` files."""
    archive = _cpio_entry("init", b"#!/bin/sh\n", 0o100755)
    for module in modules:
        archive += _cpio_entry(f"usr/lib/modules/{version}/kernel/{module}.ko", b"", 0o100644)
    archive += _cpio_entry("TRAILER!!!", b"", 0)
    path = Path(path)
    path.write_bytes(gzip.compress(archive, mtime=0))
    return path


def synthetic_rootfs(
    path: str | Path,
    options: dict[str, str] | None = None,
    *,
    version: str = "6.1.0-test-amd64",
    modules: list[str] | None = None,
    size_mb: int = 8,
) -> Path:
    """Write a small ext4 image with ``/boot/config-<version>`` (unless ``options`` is None)
    and ``/lib/modules/<version>/modules.dep`` listing ``modules``."""
    import shutil
    import tempfile

    from banger_core import system

    path = Path(path)
    tree = Path(tempfile.mkdtemp(prefix="banger-rootfs-"))
    try:
        (tree / "boot").mkdir()
        if options is not None:
            (tree / "boot" / f"config-{version}").write_text(config_text(options))
        moddir = tree / "lib" / "modules" / version
        moddir.mkdir(parents=True)
        (moddir / "modules.dep").write_text(
            "".join(f"kernel/drivers/{m}.ko:\n" for m in modules or [])
        )
        path.unlink(missing_ok=True)
        system.run(["truncate", "-s", f"{size_mb}M", str(path)], timeout=30)
        system.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(path)], timeout=60)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    return path
