"""Firecracker's x86_64 kernel loader, ported from rust-vmm's linux-loader (standard library only).

Released Firecracker loads only an uncompressed ELF ``vmlinux`` on x86_64
(``linux_loader::loader::elf::Elf``); bzImage loading exists only on
upstream main (PR 6037: the ELF loader first, the bzImage loader when the
file has no ELF magic). This module applies the same checks, in the same
order and with upstream's error texts, for each Firecracker version banger
emulates, so the simulator, the QEMU-backed VMM and ``image build`` refuse
exactly what a real Firecracker refuses at ``InstanceStart``.

Sources (file @ tag), cited again in ``docs/simulator.md``:

* ``src/loader/elf/mod.rs`` @ linux-loader v0.13.2 (``validate_header``,
  ``load``, ``parse_elf_note``) and ``src/loader/x86_64/elf/mod.rs`` @ v0.10.0;
* ``src/loader/bzimage/mod.rs`` @ linux-loader v0.14.0;
* ``src/loader/mod.rs`` @ v0.10.0 / v0.13.2 (the ``Kernel Loader: ...`` texts);
* Firecracker ``src/vmm/src/builder.rs`` @ v1.7.0 / v1.8.0,
  ``src/vmm/src/arch/x86_64/mod.rs`` @ v1.13.0 / v1.16.1 / main
  (``load_kernel``, ``get_kernel_start`` = ``HIMEM_START`` = 1 MiB), and
  ``src/vmm/src/arch/x86_64/layout.rs`` (the 32-bit MMIO gap).

What linux-loader does *not* check is not checked here either: the ELF
class (``EI_CLASS``), machine (``e_machine``) and type are ignored by
Firecracker. :func:`check_vmlinux` adds those for banger's own use (an
image's kernel must be an x86_64 ELF64), with banger's texts.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

ELF_MAGIC = b"\x7fELF"
EHDR_SIZE = 64
"""``size_of::<Elf64_Ehdr>()``."""
PHDR_SIZE = 56
"""``size_of::<Elf64_Phdr>()``."""
NHDR_SIZE = 12
"""``size_of::<Elf64_Nhdr>()`` (three u32: namesz, descsz, type)."""
PT_LOAD = 1
PT_NOTE = 4
ELFDATA2LSB = 1
ELFCLASS64 = 2
EM_X86_64 = 62
XEN_ELFNOTE_PHYS32_ENTRY = 18
"""The note type carrying the PVH 32-bit entry point."""
HIMEM_START = 0x10_0000
"""``layout::HIMEM_START``: ``get_kernel_start()``, the lowest allowed entry/load address."""
SETUP_HEADER_OFFSET = 0x1F1
SETUP_HEADER_SIZE = 0x268 - 0x1F1
"""``bootparam::setup_header`` (0x1F1 up to the end of ``kernel_info_offset``)."""
BZIMAGE_HEADER_MAGIC = 0x5372_6448
"""``HdrS`` read as a little-endian u32 at 0x202."""
LOADED_HIGH = 0x1
XLF_KERNEL_64 = 0x1
GIB = 1 << 30
FIRST_ADDR_PAST_32BITS = 1 << 32

KERNEL_LOADER_CONTEXT = (
    "Cannot load kernel due to invalid memory configuration or invalid kernel image: "
)
"""``ConfigurationError::KernelLoader`` / ``StartMicrovmError::KernelLoader`` display prefix."""


@dataclass(frozen=True)
class LoaderProfile:
    """How one Firecracker release loads a kernel on x86_64."""

    version: str
    """The emulated Firecracker version (``1.16.1``; main is ``1.17.0-dev``)."""
    linux_loader: str
    """The linux-loader release it links (its Cargo.lock)."""
    loads_bzimage: bool
    """Falls back to the bzImage loader when the file has no ELF magic (main only)."""
    system_configuration: bool
    """Loader errors are wrapped in ``System configuration error:`` (v1.10+ ``arch`` module)."""
    detailed_errors: bool
    """linux-loader v0.13+ prints the inner error after ``failed to load ELF kernel image:``."""
    gap_start: int
    """Where the 32-bit MMIO gap starts (guest RAM below it, the rest from 4 GiB)."""


PROFILES: dict[str, LoaderProfile] = {
    "1.7": LoaderProfile("1.7.0", "0.10.0", False, False, False, (4 * GIB) - 768 * (1 << 20)),
    "1.8": LoaderProfile("1.8.0", "0.11.0", False, False, False, (4 * GIB) - 768 * (1 << 20)),
    "1.13": LoaderProfile("1.13.0", "0.13.0", False, True, True, 3 * GIB),
    "1.16.1": LoaderProfile("1.16.1", "0.13.2", False, True, True, 3 * GIB),
    "main": LoaderProfile("1.17.0-dev", "0.14.0", True, True, True, 3 * GIB),
}
"""The emulated releases (``--emulate-version`` / ``BANGER_FC_EMULATE_VERSION``)."""

DEFAULT_VERSION = "1.16.1"
"""The released Firecracker banger emulates unless told otherwise."""


def profile(version: str | None = None) -> LoaderProfile:
    """The loader profile for ``version`` (``1.16.1``, ``v1.8.0``, ``1.13``, ``main``).

    A release between two profiles gets the older one's behaviour (what it
    links changes only at those releases for the checks ported here); 1.17
    and later (upstream main reports ``1.17.0-dev``) get main's. Raises
    ValueError naming the accepted values for anything else.
    """
    text = (version or DEFAULT_VERSION).strip().removeprefix("v")
    if text in PROFILES:
        return PROFILES[text]
    numbers = text.split("-", 1)[0].split(".")
    try:
        wanted = tuple(int(p) for p in numbers)
    except ValueError:
        wanted = ()
    if not 2 <= len(wanted) <= 3 or wanted < (1, 7):
        raise ValueError(
            f"Firecracker version {version!r} is not one banger emulates "
            f"(1.7 or later, e.g. {', '.join(PROFILES)})"
        )
    chosen = PROFILES["1.7"]
    for prof in PROFILES.values():
        if _numbers(prof.version) <= wanted + (0,) * (3 - len(wanted)):
            chosen = prof
    return chosen


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("-", 1)[0].split("."))


def loads_bzimage(version: str | None) -> bool:
    """Does this Firecracker version load a bzImage? (None: the default, 1.16.1)."""
    return profile(version).loads_bzimage


class KernelLoadError(Exception):
    """The kernel is refused; ``str()`` is the ``fault_message`` Firecracker answers."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
        """The innermost upstream text (``Invalid Elf magic number``)."""


@dataclass(frozen=True)
class LoadedKernel:
    """What the loader made of the kernel file."""

    format: str
    """``elf`` or ``bzimage``."""
    entry: int
    """Where the vCPU starts (the PVH entry when there is one)."""
    protocol: str
    """``PvhBoot`` or ``LinuxBoot`` (Firecracker's ``BootProtocol``)."""
    pvh_entry: int | None
    kernel_end: int


def _guest_ranges(mem_size_mib: int | None, prof: LoaderProfile) -> list[tuple[int, int]]:
    if mem_size_mib is None:
        return [(0, 1 << 64)]
    size = mem_size_mib << 20
    low = min(size, prof.gap_start)
    ranges = [(0, low)]
    if size > low:
        ranges.append((FIRST_ADDR_PAST_32BITS, FIRST_ADDR_PAST_32BITS + size - low))
    return ranges


def _fits(ranges: list[tuple[int, int]], start: int, length: int) -> bool:
    return any(lo <= start and start + length <= hi for lo, hi in ranges)


class _Refusal(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind  # "elf", "bzimage" or "loader" (linux_loader::loader::Error itself)
        self.reason = reason


def _read_exact(fh: BinaryIO, size: int, kind: str, reason: str) -> bytes:
    data = fh.read(size)
    if len(data) != size:
        raise _Refusal(kind, reason)
    return data


def _align4(value: int) -> int:
    return (value + 3) & ~3


def _load_elf(fh: BinaryIO, file_size: int, ranges: list[tuple[int, int]]) -> LoadedKernel:
    """``Elf::load`` with ``kernel_offset = None`` and ``highmem_start = HIMEM_START``."""
    fh.seek(0)
    ehdr = _read_exact(fh, EHDR_SIZE, "elf", "Unable to read elf header")
    if ehdr[:4] != ELF_MAGIC:
        raise _Refusal("elf", "Invalid Elf magic number")
    if ehdr[5] != ELFDATA2LSB:
        raise _Refusal("elf", "Trying to load big-endian binary on little-endian machine")
    (e_entry, e_phoff) = struct.unpack_from("<QQ", ehdr, 24)
    (e_phentsize, e_phnum) = struct.unpack_from("<HH", ehdr, 54)
    if e_phentsize != PHDR_SIZE:
        raise _Refusal("elf", "Invalid program header size")
    if e_phoff < EHDR_SIZE:
        raise _Refusal("elf", "Invalid program header offset")
    if e_entry < HIMEM_START:
        raise _Refusal("elf", "Invalid entry address")
    fh.seek(e_phoff)
    phdrs = []
    for _ in range(e_phnum):
        raw = _read_exact(fh, PHDR_SIZE, "elf", "Unable to read program header")
        p_type, _flags, p_offset, _vaddr, p_paddr, p_filesz, p_memsz, _align = struct.unpack(
            "<IIQQQQQQ", raw
        )
        phdrs.append((p_type, p_offset, p_paddr, p_filesz, p_memsz))
    kernel_end = 0
    pvh: int | None = None
    for p_type, p_offset, p_paddr, p_filesz, p_memsz in phdrs:
        if p_type != PT_LOAD or p_filesz == 0:
            if p_type == PT_NOTE:
                pvh = _pvh_note(fh, p_offset, p_filesz)
            continue
        # read_exact_volatile_from(p_paddr, file@p_offset, p_filesz): the bytes must
        # exist in the file and the range must be guest memory.
        if p_offset + p_filesz > file_size or not _fits(ranges, p_paddr, p_filesz):
            raise _Refusal("elf", "Unable to read kernel image")
        end = p_paddr + p_memsz
        if end >= 1 << 64:
            raise _Refusal("loader", "memory to load kernel image is not enough")
        kernel_end = max(kernel_end, end)
    if pvh is not None:
        return LoadedKernel("elf", pvh, "PvhBoot", pvh, kernel_end)
    return LoadedKernel("elf", e_entry, "LinuxBoot", None, kernel_end)


def _pvh_note(fh: BinaryIO, p_offset: int, p_filesz: int) -> int | None:
    """``parse_elf_note``: the ``XEN_ELFNOTE_PHYS32_ENTRY`` address, or None."""
    fh.seek(p_offset)
    read_size = 0
    found: tuple[int, int] | None = None
    while read_size < p_filesz:
        raw = _read_exact(fh, NHDR_SIZE, "elf", "Unable to read note header")
        namesz, descsz, ntype = struct.unpack("<III", raw)
        if ntype == XEN_ELFNOTE_PHYS32_ENTRY and namesz == 4:
            name = _read_exact(fh, 4, "elf", "Unable to read note header")
            if name == b"Xen\0":
                found = (namesz, descsz)
                break
        if _align4(namesz) > 0xFFFF_FFFF or _align4(descsz) > 0xFFFF_FFFF:
            raise _Refusal("elf", "Overflow occurred during an arithmetic operation")
        read_size += NHDR_SIZE + _align4(namesz) + _align4(descsz)
        fh.seek(p_offset + read_size)
    if found is None:
        return None
    namesz, descsz = found
    fh.seek(_align4(namesz) - 4, os.SEEK_CUR)
    if descsz < 4:
        raise _Refusal("elf", "Invalid PVH note header")
    (addr,) = struct.unpack("<I", _read_exact(fh, 4, "elf", "Unable to read note header"))
    return int(addr)


def _load_bzimage(
    fh: BinaryIO, file_size: int, ranges: list[tuple[int, int]]
) -> tuple[LoadedKernel, int, int]:
    """``BzImage::load`` (linux-loader v0.14.0); returns the kernel, version, xloadflags."""
    fh.seek(SETUP_HEADER_OFFSET)
    # read_volatile, not read_exact: a short file leaves the rest of the header zero.
    head = fh.read(SETUP_HEADER_SIZE).ljust(SETUP_HEADER_SIZE, b"\0")

    def field(offset: int, fmt: str) -> int:
        return int(struct.unpack_from(fmt, head, offset - SETUP_HEADER_OFFSET)[0])

    if field(0x202, "<I") != BZIMAGE_HEADER_MAGIC:
        raise _Refusal("bzimage", "Invalid bzImage")
    version = field(0x206, "<H")
    loadflags = field(0x211, "<B")
    if version < 0x0200 or not loadflags & LOADED_HIGH:
        raise _Refusal("bzimage", "Invalid bzImage")
    setup_sects = field(0x1F1, "<B") or 4
    setup_size = (setup_sects + 1) * 512
    if file_size < setup_size:
        raise _Refusal("bzimage", "Underflow occurred during an arithmetic operation")
    kernel_size = file_size - setup_size
    code32_start = field(0x214, "<I")
    if code32_start < HIMEM_START:
        raise _Refusal("loader", "invalid kernel start address")
    if not _fits(ranges, code32_start, kernel_size):
        raise _Refusal("bzimage", "Unable to read bzImage compressed kernel")
    loaded = LoadedKernel(
        "bzimage", code32_start + 0x200, "LinuxBoot", None, code32_start + kernel_size
    )
    return loaded, version, field(0x236, "<H")


def _message(prof: LoaderProfile, refusal: _Refusal) -> str:
    if refusal.kind == "loader":
        inner = f"Kernel Loader: {refusal.reason}"
    else:
        what = "ELF" if refusal.kind == "elf" else "bzImage"
        inner = f"Kernel Loader: failed to load {what} kernel image"
        if prof.detailed_errors:
            inner += f": Kernel Loader: {refusal.reason}"
    return _wrap(prof, KERNEL_LOADER_CONTEXT + inner)


def _wrap(prof: LoaderProfile, text: str) -> str:
    if prof.system_configuration:
        text = f"System configuration error: {text}"
    return f"Start microvm error: {text}"


def load(
    kernel: BinaryIO | str | os.PathLike[str],
    *,
    version: str | None = None,
    mem_size_mib: int | None = None,
) -> LoadedKernel:
    """Load ``kernel`` as Firecracker ``version`` would at InstanceStart.

    ``mem_size_mib`` bounds the guest memory the segments must fit in (None:
    unbounded). Raises :class:`KernelLoadError` whose text is the
    ``fault_message`` that Firecracker answers ``InstanceStart`` with.
    """
    prof = profile(version)
    if isinstance(kernel, (str, os.PathLike)):
        with open(kernel, "rb") as opened:
            return load(opened, version=prof.version, mem_size_mib=mem_size_mib)
    fh = kernel
    file_size = fh.seek(0, os.SEEK_END)
    ranges = _guest_ranges(mem_size_mib, prof)
    try:
        try:
            return _load_elf(fh, file_size, ranges)
        except _Refusal as refusal:
            if not (prof.loads_bzimage and refusal.reason == "Invalid Elf magic number"):
                raise
        loaded, hversion, xloadflags = _load_bzimage(fh, file_size, ranges)
    except _Refusal as refusal:
        raise KernelLoadError(_message(prof, refusal), refusal.reason) from None
    if hversion < 0x020C or not xloadflags & XLF_KERNEL_64:
        reason = "bzImage does not provide a 64-bit entry point"
        raise KernelLoadError(_wrap(prof, reason), reason)
    return loaded


def check_vmlinux(path: str | os.PathLike[str], *, version: str | None = None) -> LoadedKernel:
    """Check that ``path`` is an x86_64 ELF64 vmlinux Firecracker ``version`` loads.

    Beyond the loader's own checks (:func:`load`), banger requires what
    linux-loader assumes without checking: ``EI_CLASS`` is ELFCLASS64 and
    ``e_machine`` is x86-64. Raises :class:`KernelLoadError` with one line.
    """
    with open(path, "rb") as fh:
        head = fh.read(20)
        if head[:4] == ELF_MAGIC:
            if head[4] != ELFCLASS64:
                raise KernelLoadError(
                    f"{path}: ELF class {head[4]} is not ELFCLASS64 (a 64-bit vmlinux)",
                    "ELF class",
                )
            if len(head) >= 20 and struct.unpack_from("<H", head, 18)[0] != EM_X86_64:
                machine = struct.unpack_from("<H", head, 18)[0]
                raise KernelLoadError(
                    f"{path}: ELF machine {machine} is not x86-64 ({EM_X86_64})", "ELF machine"
                )
        return load(fh, version=version)
