"""Cheap synthetic guest kernels, initrds and root file systems for tests.

A real kernel is tens of MB and the simulator never runs it; it reads its
format and configuration, like Firecracker's loader and the guest kernel
would. These helpers make files that pass exactly those checks:

* :func:`synthetic_kernel` writes an x86_64 ELF vmlinux (valid by every
  check linux-loader makes: header sizes, program headers, the PVH note) or a
  bzImage (boot protocol 2.15, that vmlinux as its gzip/xz/lzma/bzip2/lz4/zstd
  payload), with a version banner and an ``IKCFG_ST`` configuration like
  ``CONFIG_IKCONFIG=y`` kernels, a few KB; ``broken=`` breaks one rule of
  :data:`LOADER_RULES` on purpose.
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


KERNEL_PADDR = 0x100_0000
"""Where the synthetic vmlinux loads (``CONFIG_PHYSICAL_START``, 16 MiB, like Debian's)."""
PVH_ENTRY = KERNEL_PADDR + 0x850
"""The synthetic vmlinux's PVH entry point (its ``XEN_ELFNOTE_PHYS32_ENTRY`` note)."""
BODY_OFFSET = 0x200

LOADER_RULES: dict[str, str] = {
    "elf-magic": "Invalid Elf magic number",
    "elf-data": "Trying to load big-endian binary on little-endian machine",
    "elf-phentsize": "Invalid program header size",
    "elf-phoff": "Invalid program header offset",
    "elf-entry": "Invalid entry address",
    "elf-short-header": "Unable to read elf header",
    "elf-phdr": "Unable to read program header",
    "elf-segment": "Unable to read kernel image",
    "elf-pvh-note": "Invalid PVH note header",
    "bzimage-magic": "Invalid bzImage",
    "bzimage-version": "Invalid bzImage",
    "bzimage-loadflags": "Invalid bzImage",
    "bzimage-code32": "invalid kernel start address",
    "bzimage-xloadflags": "bzImage does not provide a 64-bit entry point",
    "bzimage-protocol-2.11": "bzImage does not provide a 64-bit entry point",
}
"""One invalid synthetic kernel per linux-loader / Firecracker rule, and upstream's reason.

``bzimage-*`` kernels are bzImages (refused by main's bzImage loader); every
bzImage is refused by released Firecracker with ``Invalid Elf magic number``.
``bzimage-magic`` is neither ELF nor bzImage.
"""


def _elf_vmlinux(body: bytes, *, pvh: bool = True, broken: str | None = None) -> bytes:
    """An x86_64 ELF64 executable with one PT_LOAD (``body``) and a PT_NOTE (the PVH note)."""
    note = struct.pack("<III", 4, 4, 18) + b"Xen\0" + struct.pack("<I", PVH_ENTRY)
    if not pvh:  # a note of another type (Xen's guest OS name), no PVH entry
        note = struct.pack("<III", 4, 8, 6) + b"Xen\0" + b"linux\0\0\0"
    if broken == "elf-pvh-note":
        note = struct.pack("<III", 4, 2, 18) + b"Xen\0" + b"\0\0\0\0"
    phoff, phnum = 64, 2
    note_off = phoff + 56 * phnum
    entry = 0x1000 if broken == "elf-entry" else KERNEL_PADDR
    ehdr = bytearray(64)
    ehdr[0:4] = b"\x7fELF"
    ehdr[4] = 2  # ELFCLASS64
    ehdr[5] = 2 if broken == "elf-data" else 1  # ELFDATA2LSB
    ehdr[6] = 1  # EV_CURRENT
    struct.pack_into("<HHI", ehdr, 16, 2, 62, 1)  # ET_EXEC, EM_X86_64, version
    struct.pack_into(
        "<QQQIHHHHHH",
        ehdr,
        24,
        entry,
        32 if broken == "elf-phoff" else phoff,
        0,
        0,
        64,
        0 if broken == "elf-phentsize" else 56,
        40 if broken == "elf-phdr" else phnum,
        64,
        0,
        0,
    )
    filesz = len(body) + (1 << 20 if broken == "elf-segment" else 0)
    load = struct.pack(
        "<IIQQQQQQ",
        1,
        5,
        BODY_OFFSET,
        0xFFFFFFFF81000000,
        KERNEL_PADDR,
        filesz,
        len(body),
        0x200000,
    )
    note_ph = struct.pack(
        "<IIQQQQQQ", 4, 4, note_off, 0, KERNEL_PADDR - 0x1000, len(note), len(note), 4
    )
    head = bytes(ehdr) + load + note_ph + note
    data = head.ljust(BODY_OFFSET, b"\0") + body
    if broken == "elf-magic":
        data = b"\x7fELG" + data[4:]
    if broken == "elf-short-header":
        data = data[:40]
    return data


def _kernel_body(options: dict[str, str], version: str, embed_config: bool) -> bytes:
    return (
        b"\x90" * 64
        + f"Linux version {version} (banger-test) #1 SMP\n".encode()
        + b"\0" * 64
        + (_ikconfig(options) if embed_config else b"")
    )


def _compress(data: bytes, compression: str) -> bytes:
    """``data`` compressed as a kernel build does for its bzImage payload (size appended)."""
    import bz2
    import lzma
    import tempfile

    from banger_core import system

    size = struct.pack("<I", len(data) % (1 << 32))
    if compression == "gzip":
        return gzip.compress(data, mtime=0)  # ISIZE is gzip's own trailer
    if compression == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32) + size
    if compression == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_ALONE) + size
    if compression == "bzip2":
        return bz2.compress(data) + size
    if compression in ("lz4", "zstd"):
        with tempfile.TemporaryDirectory(prefix="banger-kernel-") as tmp:
            src, dst = Path(tmp, "in"), Path(tmp, "out")
            src.write_bytes(data)
            argv = ["lz4", "-l", "-q", "-f", str(src), str(dst)]  # legacy frame, as the kernel
            if compression == "zstd":
                argv = ["zstd", "-q", "-f", str(src), "-o", str(dst)]
            system.run(argv, timeout=60)
            return dst.read_bytes() + size
    raise ValueError(f"compression {compression!r} is not gzip, xz, lzma, bzip2, lz4 or zstd")


def _bzimage(payload: bytes, version: str, broken: str | None = None) -> bytes:
    setup_sects = 1
    setup = bytearray(512 * (setup_sects + 1))
    setup[0x1F1] = setup_sects
    setup[0x1FE:0x200] = b"\x55\xaa"
    setup[0x202:0x206] = b"HdrX" if broken == "bzimage-magic" else b"HdrS"
    protocol = {"bzimage-version": 0x01FF, "bzimage-protocol-2.11": 0x020B}.get(
        broken or "", 0x020F
    )
    struct.pack_into("<H", setup, 0x206, protocol)  # boot protocol 2.15
    banner = f"{version} (banger-test) #1 SMP".encode() + b"\0"
    struct.pack_into("<H", setup, 0x20E, 0x300 - 0x200)  # kernel_version string offset
    setup[0x300 : 0x300 + len(banner)] = banner
    setup[0x211] = 0 if broken == "bzimage-loadflags" else 0x01  # LOADED_HIGH
    code32 = 0x1000 if broken == "bzimage-code32" else 0x10_0000
    struct.pack_into("<I", setup, 0x214, code32)
    xloadflags = 0 if broken == "bzimage-xloadflags" else 0x7F  # XLF_KERNEL_64 and friends
    struct.pack_into("<H", setup, 0x236, xloadflags)
    struct.pack_into("<II", setup, 0x248, 0, len(payload))  # payload_offset, payload_length
    return bytes(setup) + payload + b"\0" * 16


def synthetic_kernel(
    path: str | Path,
    options: dict[str, str] | None = None,
    *,
    fmt: str = "elf",
    version: str = "6.1.0-test-amd64",
    embed_config: bool = True,
    compression: str = "gzip",
    pvh: bool = True,
    broken: str | None = None,
) -> Path:
    """Write a small kernel file Firecracker's loader (linux-loader's checks) accepts.

    ``fmt`` is ``elf`` (an x86_64 ELF64 vmlinux: a PT_LOAD at 16 MiB and a
    PT_NOTE with the PVH entry unless ``pvh`` is False; what released
    Firecracker loads) or ``bzimage`` (boot protocol 2.15, LOADED_HIGH,
    XLF_KERNEL_64, that vmlinux compressed with ``compression`` as its
    payload: what only Firecracker main loads). ``options`` (default
    :data:`FIRECRACKER_CONFIG`) is embedded as IKCONFIG unless
    ``embed_config`` is False. ``broken`` names a rule of
    :data:`LOADER_RULES` the file breaks on purpose.
    """
    options = FIRECRACKER_CONFIG if options is None else options
    if broken is not None and broken not in LOADER_RULES:
        raise ValueError(f"broken {broken!r} is not one of {', '.join(LOADER_RULES)}")
    if fmt not in ("elf", "bzimage"):
        raise ValueError(f"fmt {fmt!r} is not bzimage or elf")
    elf_broken = broken if broken and broken.startswith("elf-") else None
    vmlinux = _elf_vmlinux(_kernel_body(options, version, embed_config), pvh=pvh, broken=elf_broken)
    path = Path(path)
    if fmt == "elf" and not (broken or "").startswith("bzimage-"):
        path.write_bytes(vmlinux)
        return path
    bz_broken = broken if broken and broken.startswith("bzimage-") else None
    path.write_bytes(_bzimage(_compress(vmlinux, compression), version, bz_broken))
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
