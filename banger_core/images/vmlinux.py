"""Turn a bzImage into the ELF ``vmlinux`` released Firecracker loads.

A bzImage is a real-mode setup block followed by a small decompressor and
the compressed ELF ``vmlinux`` (``payload_offset``/``payload_length`` in the
setup header, boot protocol 2.08+). The payload is whatever the kernel was
built with (``CONFIG_KERNEL_GZIP``, ``_XZ``, ``_LZMA``, ``_LZ4``, ``_ZSTD``,
``_BZIP2``); its last four bytes are the uncompressed size (gzip's ISIZE,
or what ``size_append`` adds for the others). Decompressing it gives exactly
the vmlinux the bzImage would have unpacked in the guest: same code, same
notes (the PVH entry of a ``CONFIG_PVH=y`` kernel), same embedded IKCONFIG.
The result is checked with :func:`banger_core.images.kernelload.check_vmlinux`.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from banger_core.errors import BangerError
from banger_core.images import kernelload
from banger_core.images.kernelcaps import bzimage_payload, decompress, kernel_format

COMPRESSIONS = {
    b"\x1f\x8b": "gzip",
    b"\xfd7zXZ": "xz",
    b"\x5d\x00\x00": "lzma",
    b"BZh": "bzip2",
    b"\x02\x21\x4c\x18": "lz4",
    b"\x04\x22\x4d\x18": "lz4",
    b"\x28\xb5\x2f\xfd": "zstd",
}
"""Payload magic → compression (lz4: the legacy frame and the current one)."""


def payload_compression(payload: bytes) -> str | None:
    """The compression a bzImage payload names by its magic bytes, or None."""
    for magic, name in COMPRESSIONS.items():
        if payload.startswith(magic):
            return name
    return None


def extract_vmlinux(
    bzimage: str | os.PathLike[str], dest: str | os.PathLike[str], *, version: str | None = None
) -> Path:
    """Write the ELF vmlinux inside ``bzimage`` to ``dest`` and check it.

    The vmlinux must load on Firecracker ``version`` (default 1.16.1).
    Raises :class:`BangerError` with one line naming the file and the
    problem; nothing is left at ``dest`` then.
    """
    src, out = Path(bzimage), Path(dest)
    data = src.read_bytes()
    fmt = kernel_format(data)
    if fmt != "bzimage":
        what = "already an ELF vmlinux" if fmt == "elf" else "not a kernel image"
        raise BangerError(f"kernel {src} is {what}, not a bzImage")
    payload = bzimage_payload(data)
    if payload is None or len(payload) < 8:
        raise BangerError(
            f"kernel {src}: bzImage has no compressed payload (boot protocol 2.08+ needed)"
        )
    compression = payload_compression(payload)
    if compression is None:
        raise BangerError(
            f"kernel {src}: unknown payload compression (magic {payload[:4].hex()}; "
            f"known: {', '.join(sorted(set(COMPRESSIONS.values())))})"
        )
    (expected,) = struct.unpack("<I", payload[-4:])
    body = payload if compression == "gzip" else payload[:-4]
    inner = decompress(body)
    if inner is None:
        tool = {"lz4": " (needs the lz4 program)", "zstd": " (needs the zstd program)"}
        raise BangerError(
            f"kernel {src}: cannot decompress its {compression} payload{tool.get(compression, '')}"
        )
    if len(inner) % (1 << 32) != expected:
        raise BangerError(
            f"kernel {src}: the {compression} payload gave {len(inner)} bytes, "
            f"its header says {expected}"
        )
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_bytes(inner)
        kernelload.check_vmlinux(tmp, version=version)
        os.replace(tmp, out)
    except kernelload.KernelLoadError as exc:
        raise BangerError(f"kernel {src}: its vmlinux does not load: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out
