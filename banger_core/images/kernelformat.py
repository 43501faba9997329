"""Which kernel file formats a Firecracker version loads: ELF vmlinux always, bzImage on main.

Released Firecracker (every tag up to v1.16.1) loads only an ELF vmlinux on
x86_64; upstream main (1.17.0-dev, PR 6037) also loads a bzImage. The rules
are :mod:`banger_core.images.kernelload`'s; this module states them for the
launcher, ``image show``/``image list``/``doctor``, next to the VMM version.
"""

from __future__ import annotations

from banger_core.errors import BangerError
from banger_core.images import kernelload


def version_text(version: tuple[int, int, int] | None) -> str:
    """``v1.16.1`` (``(version unknown)`` when ``--version`` said nothing: taken as 1.16.1)."""
    return "v" + ".".join(map(str, version)) if version else "(version unknown)"


def loads(fmt: str | None, version: tuple[int, int, int] | None) -> bool:
    """Can Firecracker ``version`` load a kernel of format ``fmt``? (unknown version: 1.16.1).

    A file that is no kernel (``fmt`` None) never loads.
    """
    if fmt == "elf":
        return True
    if fmt != "bzimage":
        return False
    shown = ".".join(map(str, version)) if version else None
    try:
        return kernelload.loads_bzimage(shown)
    except ValueError:  # older than any release banger knows: no bzImage either
        return False


def format_problem(
    kernel: str, fmt: str | None, version: tuple[int, int, int] | None, *, image: str
) -> str | None:
    """One line saying why Firecracker ``version`` cannot load ``kernel``, with the fix; or None."""
    if loads(fmt, version):
        return None
    if fmt == "bzimage":
        return (
            f"kernel {kernel} of image {image!r} is a bzImage; Firecracker "
            f"{version_text(version)} loads only an ELF vmlinux (bzImage needs 1.17/main): "
            f"run `banger image convert-kernel {image}`"
        )
    return f"kernel {kernel} of image {image!r} is not a kernel image (neither ELF nor bzImage)"


def format_summary(fmt: str | None, version: tuple[int, int, int] | None) -> dict[str, object]:
    """``{"format", "vmm_version", "loads"}``: what ``image show``/``list``/``doctor`` state."""
    return {
        "format": fmt or "unknown",
        "vmm_version": version_text(version),
        "loads": loads(fmt, version),
    }


def check_format(
    kernel: str, fmt: str | None, version: tuple[int, int, int] | None, *, image: str
) -> None:
    """Raise :class:`BangerError` (one line) when ``version`` cannot load ``kernel``."""
    problem = format_problem(kernel, fmt, version, image=image)
    if problem:
        raise BangerError(problem)
