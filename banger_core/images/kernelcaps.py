"""What a guest kernel can do: image format, virtio transports, drivers, IP_PNP.

Read once when an image is built or registered (and by the simulator at
InstanceStart), from the kernel's configuration: an explicit
``--kernel-config`` file, else the configuration embedded in the kernel
(``CONFIG_IKCONFIG``, found like ``scripts/extract-ikconfig`` does, inside
the compressed payload of a bzImage too), else the root file system's
``/boot/config-<release>`` when that release is the kernel's own (read
from the ext4 image with ``debugfs``, nothing is mounted). Modules (``=m``) count only where
they are available when needed: the root disk's transport and ``virtio_blk``
must be in the initrd; the NIC driver and the vsock transport may also come
from the root file system's ``/lib/modules`` (udev or ``banger-boot`` loads
them after the root is mounted).

The result, :class:`KernelCaps`, is stored with the image as a JSON map;
images recorded by an older banger have none (``known`` is False) and keep
today's behaviour.
"""

from __future__ import annotations

import bz2
import contextlib
import lzma
import os
import re
import struct
import tempfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from banger_core import system
from banger_core.errors import BangerError

ELF_MAGIC = b"\x7fELF"
BZIMAGE_MAGIC = b"HdrS"
BZIMAGE_MAGIC_OFFSET = 0x202
IKCFG_START = b"IKCFG_ST"
IKCFG_END = b"IKCFG_ED"

TRANSPORTS = ("mmio-cmdline", "mmio-acpi", "pci")
"""How the guest finds its virtio devices: kernel command line, ACPI tables, PCI."""

OPTIONS = (
    "ACPI",
    "PCI",
    "VIRTIO",
    "VIRTIO_MMIO",
    "VIRTIO_MMIO_CMDLINE_DEVICES",
    "VIRTIO_PCI",
    "VIRTIO_BLK",
    "VIRTIO_NET",
    "VSOCKETS",
    "VIRTIO_VSOCKETS",
    "IP_PNP",
    "EXT4_FS",
    "SERIAL_8250_CONSOLE",
    "IKCONFIG",
)
"""The configuration options banger records (``CONFIG_`` left off)."""

MODULES = {
    "VIRTIO_MMIO": "virtio_mmio",
    "VIRTIO_PCI": "virtio_pci",
    "VIRTIO_BLK": "virtio_blk",
    "VIRTIO_NET": "virtio_net",
    "VIRTIO_VSOCKETS": "vmw_vsock_virtio_transport",
}
"""The module each driver option builds when it is ``=m``."""

FEATURES = {"virtio_blk": "VIRTIO_BLK", "virtio_net": "VIRTIO_NET", "vsock": "VIRTIO_VSOCKETS"}
"""Drivers ``image show`` reports, by the option that builds them."""

_MODULE_FILE = re.compile(r"(?:^|/)([^/]+)\.ko(?:\.(?:xz|zst|gz))?$")


# --------------------------------------------------------------------------
# the kernel file


def kernel_format(data: bytes) -> str | None:
    """``"elf"`` (vmlinux), ``"bzimage"`` (``HdrS`` at 0x202) or None (not a kernel)."""
    if data[:4] == ELF_MAGIC:
        return "elf"
    if data[BZIMAGE_MAGIC_OFFSET : BZIMAGE_MAGIC_OFFSET + 4] == BZIMAGE_MAGIC:
        return "bzimage"
    return None


def kernel_version(data: bytes) -> str | None:
    """The release (``6.1.0-9-cloud-amd64``) from a bzImage header or an ELF's banner."""
    if kernel_format(data) == "bzimage" and len(data) > 0x210:
        (offset,) = struct.unpack_from("<H", data, 0x20E)
        start = offset + 0x200
        if offset and start < len(data):
            text = data[start : start + 256].split(b"\0", 1)[0].decode("ascii", "replace")
            if text.split():
                return text.split()[0]
    match = re.search(rb"Linux version (\S+) ", data)
    return match.group(1).decode("ascii", "replace") if match else None


def bzimage_payload(data: bytes) -> bytes | None:
    """The compressed vmlinux inside a bzImage (``payload_offset``/``payload_length``)."""
    if kernel_format(data) != "bzimage" or len(data) < 0x250:
        return None
    setup_sects = data[0x1F1] or 4
    (offset, length) = struct.unpack_from("<II", data, 0x248)
    start = (setup_sects + 1) * 512 + offset
    if not length or start + length > len(data):
        return None
    return data[start : start + length]


def _ikconfig_in(data: bytes) -> str | None:
    start = data.find(IKCFG_START)
    if start < 0:
        return None
    end = data.find(IKCFG_END, start)
    blob = data[start + len(IKCFG_START) : end if end > 0 else None]
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(blob).decode(errors="replace")
    except zlib.error:
        return None


LZ4_LEGACY_MAGIC = b"\x02\x21\x4c\x18"
"""LZ4's legacy frame (what the kernel's ``lz4 -l`` makes: Debian's 6.1 cloud kernel)."""
LZ4_FRAME_MAGIC = b"\x04\x22\x4d\x18"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def decompress(data: bytes) -> bytes | None:
    """Decompress one gzip/xz/lzma/bzip2/lz4/zstd stream (trailing bytes ignored); None if none.

    gzip, xz, lzma and bzip2 use the standard library; lz4 and zstd (not in
    Python 3.11's) the ``lz4`` and ``zstd`` programs.
    """
    try:
        if data[:2] == b"\x1f\x8b":
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
        if data[:6] == b"\xfd7zXZ\x00":
            return lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(data)
        if data[:3] == b"\x5d\x00\x00":
            return lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(data)
        if data[:3] == b"BZh":
            return bz2.BZ2Decompressor().decompress(data)
        if data[:4] == ZSTD_MAGIC:
            return _external("zstd", data)
        if data[:4] in (LZ4_LEGACY_MAGIC, LZ4_FRAME_MAGIC):
            return _external("lz4", data)
    except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError):
        return None
    return None


def _external(program: str, data: bytes) -> bytes | None:
    """Decompress with ``program -d`` (``zstd`` or ``lz4``); None when it is missing or fails.

    Output written before an error (trailing bytes after the stream) is kept.
    """
    if system.which(program) is None:
        return None
    with tempfile.TemporaryDirectory(prefix=f"banger-{program}-") as tmp:
        src, dst = Path(tmp, "in"), Path(tmp, "out")
        src.write_bytes(data)
        out = ["-o", str(dst)] if program == "zstd" else [str(dst)]
        res = system.run([program, "-q", "-d", "-f", str(src), *out], check=False, timeout=120)
        if not dst.exists() or (res.returncode != 0 and not dst.stat().st_size):
            return None
        return dst.read_bytes()


def extract_ikconfig(data: bytes) -> str | None:
    """The embedded ``.config`` (CONFIG_IKCONFIG), like ``scripts/extract-ikconfig``.

    Looks in the file as is (an ELF vmlinux), then in a bzImage's compressed
    payload.
    """
    found = _ikconfig_in(data)
    if found is not None:
        return found
    payload = bzimage_payload(data)
    if payload is not None:
        inner = decompress(payload)
        if inner is not None:
            return _ikconfig_in(inner)
    return None


# --------------------------------------------------------------------------
# configuration text, initrd, root file system


def parse_config(text: str) -> dict[str, str]:
    """``{"VIRTIO_MMIO": "m", "IP_PNP": "n", ...}`` from a kernel ``.config``."""
    options: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("CONFIG_") and "=" in line:
            key, _, value = line[7:].partition("=")
            options[key] = value.strip('"')
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            options[line[9:-11]] = "n"
    return options


def cpio_names(data: bytes) -> list[str]:
    """File names in an initrd: concatenated newc cpio archives, each maybe compressed."""
    names: list[str] = []
    pos = 0
    while pos < len(data):
        while pos < len(data) and data[pos] == 0:
            pos += 1
        if pos >= len(data):
            break
        if data[pos : pos + 6] in (b"070701", b"070702"):
            pos = _cpio_archive(data, pos, names)
            continue
        inner = decompress(data[pos:])
        if inner is None:
            break
        names.extend(cpio_names(inner))
        break  # a compressed archive runs to the end of the file
    return names


def _cpio_archive(data: bytes, pos: int, names: list[str]) -> int:
    while pos + 110 <= len(data) and data[pos : pos + 6] in (b"070701", b"070702"):
        header = data[pos : pos + 110]
        filesize = int(header[54:62], 16)
        namesize = int(header[94:102], 16)
        name_end = pos + 110 + namesize
        name = data[pos + 110 : name_end - 1].decode("utf-8", "replace")
        body = name_end + (-name_end % 4)
        pos = body + filesize + (-(body + filesize) % 4)
        if name == "TRAILER!!!":
            break
        names.append(name)
    return pos


def module_names(paths: list[str]) -> set[str]:
    """Module names (``virtio_blk``) from paths of ``.ko``/``.ko.xz``/``.ko.zst`` files."""
    found = set()
    for path in paths:
        match = _MODULE_FILE.search(path)
        if match:
            found.add(match.group(1).replace("-", "_"))
    return found


def initrd_modules(path: str | os.PathLike[str]) -> set[str]:
    """Names of the kernel modules an initrd carries."""
    return module_names(cpio_names(Path(path).read_bytes()))


def rootfs_read(rootfs: str | os.PathLike[str], path: str) -> str | None:
    """A text file from an ext4 image, via ``debugfs`` (nothing is mounted); None if absent."""
    if system.which("debugfs") is None:
        return None
    res = system.run(["debugfs", "-R", f"cat {path}", str(rootfs)], check=False, timeout=60)
    if res.returncode != 0 or "File not found" in res.stderr:
        return None
    return res.stdout


def rootfs_list(rootfs: str | os.PathLike[str], directory: str) -> list[str]:
    """Entry names in a directory of an ext4 image (``debugfs ls -p``)."""
    if system.which("debugfs") is None:
        return []
    res = system.run(["debugfs", "-R", f"ls -p {directory}", str(rootfs)], check=False, timeout=60)
    names = []
    for line in res.stdout.splitlines():
        parts = line.strip().strip("/").split("/")
        if len(parts) >= 5 and parts[4] not in (".", ".."):
            names.append(parts[4])
    return names


def rootfs_config(rootfs: str | os.PathLike[str], version: str | None) -> tuple[str, str] | None:
    """``(path, text)`` of the root file system's ``/boot/config-<version>``.

    Only the configuration of the kernel's own release counts: without a
    version, or with no file for it, None (another release's configuration
    says nothing about this kernel).
    """
    if not version:
        return None
    text = rootfs_read(rootfs, f"/boot/config-{version}")
    return (f"/boot/config-{version}", text) if text else None


def rootfs_modules(rootfs: str | os.PathLike[str], version: str | None) -> set[str]:
    """Modules in the root file system's ``/lib/modules/<version>/modules.dep``."""
    if not version:
        return set()
    text = rootfs_read(rootfs, f"/lib/modules/{version}/modules.dep") or ""
    return module_names([line.split(":", 1)[0] for line in text.splitlines()])


# --------------------------------------------------------------------------
# capabilities


@dataclass
class KernelCaps:
    """What a kernel can do, as far as banger needs to know."""

    format: str | None = None
    version: str | None = None
    config_source: str | None = None
    """Where the configuration came from; None means the capabilities are unknown."""
    options: dict[str, str] = field(default_factory=dict)
    initrd_modules: list[str] = field(default_factory=list)
    rootfs_modules: list[str] = field(default_factory=list)

    @property
    def known(self) -> bool:
        """True when a kernel configuration was found."""
        return self.config_source is not None

    def option(self, name: str) -> str:
        """``y``, ``m`` or ``n`` (unset options are ``n``)."""
        return self.options.get(name, "n")

    def _early(self, name: str) -> bool:
        value = self.option(name)
        return value == "y" or (value == "m" and MODULES.get(name, "") in self.initrd_modules)

    def _late(self, name: str) -> bool:
        module = MODULES.get(name, "")
        return self._early(name) or (self.option(name) == "m" and module in self.rootfs_modules)

    def _why_not_early(self, name: str) -> str:
        value = self.option(name)
        if value == "m":
            return f"CONFIG_{name}=m but the initrd has no {MODULES.get(name, name.lower())} module"
        return f"CONFIG_{name} is not set"

    def transport_problem(self, transport: str) -> str | None:
        """Why ``transport`` cannot work with this kernel (None: it can, or unknown)."""
        if not self.known:
            return None
        if transport == "mmio-cmdline":
            if not self._early("VIRTIO_MMIO"):
                return self._why_not_early("VIRTIO_MMIO")
            if self.option("VIRTIO_MMIO_CMDLINE_DEVICES") != "y":
                return "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is not set"
        elif transport == "mmio-acpi":
            if self.option("ACPI") != "y":
                return "CONFIG_ACPI is not set"
            if self.option("PCI") != "y":  # Firecracker's kernel policy: ACPI needs PCI
                return "CONFIG_PCI is not set (the guest's ACPI initialisation needs it)"
            if not self._early("VIRTIO_MMIO"):
                return self._why_not_early("VIRTIO_MMIO")
        elif transport == "pci":
            if self.option("PCI") != "y":
                return "CONFIG_PCI is not set"
            if not self._early("VIRTIO_PCI"):
                return self._why_not_early("VIRTIO_PCI")
        else:
            raise ValueError(f"unknown transport {transport!r}")
        return None

    def transports(self) -> list[str]:
        """The transports this kernel can use (every one when unknown)."""
        return [t for t in TRANSPORTS if self.transport_problem(t) is None]

    def root_disk_problem(self) -> str | None:
        """Why the root disk (virtio-blk) cannot be found at boot, or None."""
        if not self.known or self._early("VIRTIO_BLK"):
            return None
        return self._why_not_early("VIRTIO_BLK")

    def feature(self, name: str) -> str:
        """``built-in``, ``module (initrd)``, ``module (rootfs)``, ``module (missing)``,
        ``no`` or ``unknown`` for ``virtio_blk``, ``virtio_net`` or ``vsock``."""
        if not self.known:
            return "unknown"
        option = FEATURES[name]
        value = self.option(option)
        if value == "y":
            return "built-in"
        if value != "m":
            return "no"
        module = MODULES[option]
        if module in self.initrd_modules:
            return "module (initrd)"
        if module in self.rootfs_modules:
            return "module (rootfs)"
        return "module (missing)"

    def has(self, name: str) -> bool:
        """True when the driver ``name`` (virtio_net, vsock, ...) can be used once booted.

        Unknown capabilities count as yes (today's behaviour).
        """
        return not self.known or self._late(FEATURES[name])

    @property
    def ip_pnp(self) -> bool | None:
        """Whether the kernel applies ``ip=`` itself (None: unknown)."""
        return None if not self.known else self.option("IP_PNP") == "y"

    def boot_problem(self) -> str | None:
        """One line saying why no transport can boot this kernel, or None."""
        if self.format is None:
            return "not a kernel image (neither an ELF vmlinux nor a bzImage)"
        if not self.known:
            return None
        if not self.transports():
            reasons = "; ".join(f"{t}: {self.transport_problem(t)}" for t in TRANSPORTS)
            return f"no virtio transport can find its devices ({reasons})"
        root = self.root_disk_problem()
        if root:
            return f"the root disk cannot be found: {root}"
        return None

    def to_dict(self) -> dict[str, Any]:
        """The stored form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> KernelCaps:
        """Read the stored form; an empty map (an older store) gives unknown caps."""
        if not data:
            return cls()
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**fields)

    def summary(self) -> dict[str, Any]:
        """What ``image show`` and ``doctor`` print."""
        if not self.known:
            return {
                "format": self.format or "unknown",
                "version": self.version,
                "config": "unknown",
                "transports": "unknown",
                **{name: "unknown" for name in FEATURES},
                "ip_pnp": "unknown",
            }
        return {
            "format": self.format or "not a kernel",
            "version": self.version,
            "config": self.config_source,
            "transports": self.transports(),
            **{name: self.feature(name) for name in FEATURES},
            "ip_pnp": "yes" if self.ip_pnp else "no",
        }


def detect(
    kernel: str | os.PathLike[str],
    *,
    initrd: str | os.PathLike[str] | None = None,
    rootfs: str | os.PathLike[str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> KernelCaps:
    """Read a kernel's capabilities from its files.

    The configuration comes from ``config_file`` when given, else the
    kernel's own IKCONFIG, else the root file system's
    ``/boot/config-<release>`` when ``<release>`` is the kernel's own (read
    from the bzImage header or the ELF's banner); ``config_source`` says which.
    """
    data = Path(kernel).read_bytes()
    caps = KernelCaps(format=kernel_format(data), version=kernel_version(data))
    text: str | None = None
    if config_file is not None:
        try:
            text = Path(config_file).read_text(errors="replace")
        except OSError as exc:
            raise BangerError(f"kernel config {config_file}: {exc.strerror}") from None
        if not parse_config(text):
            raise BangerError(f"kernel config {config_file} has no CONFIG_ lines")
        caps.config_source = str(config_file)
    if text is None:
        text = extract_ikconfig(data)
        if text is not None:
            caps.config_source = "kernel (IKCONFIG)"
    if text is None and rootfs is not None:
        found = rootfs_config(rootfs, caps.version)
        if found:
            caps.config_source, text = f"rootfs {found[0]} (the kernel's release)", found[1]
    if text is None:
        return caps
    options = parse_config(text)
    caps.options = {k: options[k] for k in OPTIONS if k in options}
    if initrd is not None:
        with contextlib.suppress(OSError):
            caps.initrd_modules = sorted(initrd_modules(initrd) & set(MODULES.values()))
    if rootfs is not None:
        caps.rootfs_modules = sorted(rootfs_modules(rootfs, caps.version) & set(MODULES.values()))
    return caps
