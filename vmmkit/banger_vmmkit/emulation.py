"""Which Firecracker release a stand-in VMM emulates (``--emulate-version`` or the environment).

``banger-fcsim`` and ``banger-fcqemu`` behave as Firecracker v1.16.1 (the
latest release) unless told otherwise: ``--emulate-version V`` on their
command line (not a Firecracker flag: the daemon never passes it), else
``BANGER_FC_EMULATE_VERSION=V`` in their environment (inherited from the
daemon, so a whole simulated host can emulate one release). ``V`` is one of
``1.7``, ``1.8``, ``1.13``, ``1.16.1``, ``main`` (or a full version, which
behaves as the release at or before it; see
:func:`banger_core.images.kernelload.profile`).

What changes with the version: the version reported (``--version``,
``GET /version``, the log), the kernel loader (ELF only; main also
bzImage, with the texts of the linux-loader it links), whether MMIO devices
are also described in ACPI (v1.8+) and whether ``--enable-pci`` exists
(v1.13+).
"""

from __future__ import annotations

import os

from banger_core.images import kernelload

ENV = "BANGER_FC_EMULATE_VERSION"
ACPI_SINCE = (1, 8, 0)
PCI_SINCE = (1, 13, 0)


def resolve(cli_value: str | None = None, environ: dict[str, str] | None = None) -> str:
    """The emulated version (``1.16.1``, ``1.17.0-dev`` for main) from the flag, else the env.

    Raises ValueError with one line naming the bad value and what is allowed.
    """
    env = os.environ if environ is None else environ
    raw = cli_value if cli_value is not None else env.get(ENV)
    source = "--emulate-version" if cli_value is not None else ENV
    if raw is None or raw.strip() == "":
        return kernelload.profile(None).version
    try:
        return kernelload.profile(raw).version
    except ValueError:
        raise ValueError(
            f"{source}={raw!r} is not a Firecracker version banger emulates "
            f"(one of {', '.join(kernelload.PROFILES)}, or a full version 1.7.0 or later)"
        ) from None


def numbers(version: str) -> tuple[int, int, int]:
    """``(1, 16, 1)`` from ``1.16.1`` / ``1.17.0-dev``."""
    parts = [int(p) for p in version.split("-", 1)[0].split(".")]
    return (parts + [0, 0, 0])[0], (parts + [0, 0, 0])[1], (parts + [0, 0, 0])[2]


def has_acpi(version: str) -> bool:
    """Does this release describe its MMIO devices in ACPI (x86_64, v1.8+)?"""
    return numbers(version) >= ACPI_SINCE


def has_pci(version: str) -> bool:
    """Does this release have ``--enable-pci`` (v1.13+)?"""
    return numbers(version) >= PCI_SINCE
