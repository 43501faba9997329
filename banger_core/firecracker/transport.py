"""Which virtio transport a VM uses: MMIO (Firecracker's default) or PCI (``--enable-pci``).

Firecracker describes its virtio-mmio devices on the kernel command line
(``virtio_mmio.device=...``, needs ``CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES``)
and, since v1.8 on x86_64 (upstream PR #4428), also in the ACPI DSDT (needs
``CONFIG_ACPI``). Since v1.13 (PR #5364) ``--enable-pci`` puts every virtio
device on PCI instead (needs ``CONFIG_PCI`` and ``CONFIG_VIRTIO_PCI``).

``[firecracker] transport``: ``auto`` (MMIO when the kernel can find MMIO
devices the way this Firecracker describes them, else PCI), ``mmio`` or
``pci``; a choice the kernel cannot use is an error before the VMM starts.
"""

from __future__ import annotations

import os
import re
import threading

from banger_core import system
from banger_core.errors import BangerError
from banger_core.images.kernelcaps import KernelCaps

TRANSPORT_CHOICES = ("auto", "mmio", "pci")
ACPI_SINCE = (1, 8, 0)
"""First Firecracker release describing MMIO devices through ACPI on x86_64."""
PCI_SINCE = (1, 13, 0)
"""First Firecracker release with ``--enable-pci``."""

_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")
_cache: dict[tuple[str, float], tuple[int, int, int] | None] = {}
_cache_lock = threading.Lock()


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``(1, 16, 1)`` from ``Firecracker v1.16.1`` (None when there is no version)."""
    match = _VERSION.search(text)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def vmm_version(binary: str) -> tuple[int, int, int] | None:
    """The VMM's version from ``<binary> --version`` (cached per binary file)."""
    path = binary if "/" in binary else (system.which(binary) or binary)
    try:
        key = (path, os.stat(path).st_mtime)
    except OSError:
        return None
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    res = system.run([path, "--version"], check=False, timeout=30)
    version = parse_version(res.stdout) if res.returncode == 0 else None
    with _cache_lock:
        _cache[key] = version
    return version


def has_acpi(version: tuple[int, int, int] | None) -> bool:
    """Does this Firecracker describe MMIO devices in ACPI? (unknown version: assume current)."""
    return version is None or version >= ACPI_SINCE


def mmio_problem(caps: KernelCaps, version: tuple[int, int, int] | None) -> str | None:
    """Why the kernel cannot find MMIO devices from this Firecracker, or None."""
    cmdline = caps.transport_problem("mmio-cmdline")
    if cmdline is None:
        return None
    if not has_acpi(version):
        shown = ".".join(map(str, version)) if version else "?"
        return (
            f"{cmdline} (Firecracker v{shown} announces MMIO devices only on the "
            "command line; ACPI came in v1.8)"
        )
    acpi = caps.transport_problem("mmio-acpi")
    if acpi is None:
        return None
    return f"command line: {cmdline}; ACPI: {acpi}"


def pci_problem(caps: KernelCaps, version: tuple[int, int, int] | None) -> str | None:
    """Why PCI cannot work (kernel or Firecracker too old), or None."""
    if version is not None and version < PCI_SINCE:
        return f"Firecracker v{'.'.join(map(str, version))} has no --enable-pci (v1.13+)"
    return caps.transport_problem("pci")


def choose_transport(
    caps: KernelCaps, setting: str, version: tuple[int, int, int] | None, *, image: str = ""
) -> str:
    """``"mmio"`` or ``"pci"`` for this kernel, setting and Firecracker version.

    Raises :class:`BangerError` naming what is missing when the setting
    cannot work with the kernel.
    """
    if setting not in TRANSPORT_CHOICES:
        raise BangerError(
            f"[firecracker] transport = {setting!r} is not one of: {', '.join(TRANSPORT_CHOICES)}"
        )
    what = f"the kernel of image {image!r}" if image else "the kernel"
    mmio, pci = mmio_problem(caps, version), pci_problem(caps, version)
    if setting == "mmio":
        if mmio:
            raise BangerError(
                f'[firecracker] transport = "mmio": {what} cannot find MMIO devices: {mmio}'
            )
        return "mmio"
    if setting == "pci":
        if pci:
            raise BangerError(f'[firecracker] transport = "pci": {what} cannot use PCI: {pci}')
        return "pci"
    if mmio is None:
        return "mmio"
    if pci is None:
        return "pci"
    raise BangerError(f"{what} cannot find its virtio devices: MMIO: {mmio}; PCI: {pci}")
