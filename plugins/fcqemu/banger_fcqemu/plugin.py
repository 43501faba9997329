"""The banger plugin of banger-fcqemu: registers the QEMU-backed VMM as a back-end."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from banger_core import hookimpl

if TYPE_CHECKING:
    from banger_core import BackendProbe, VMMBackend

NAME = "fcqemu"
PROGRAM = "banger-fcqemu"


def probe(path: str) -> BackendProbe:
    """Is QEMU there for banger-fcqemu, and which accelerator it would use."""
    from banger_core import BackendProbe, which
    from banger_fcqemu.accel import choose_accel

    qemu = os.environ.get("BANGER_FCQEMU_QEMU") or "qemu-system-x86_64"
    found = which(qemu)
    if not found:
        return BackendProbe(False, f"{qemu} not found", "apt install qemu-system-x86")
    try:
        accel, why = choose_accel()
    except ValueError as exc:
        return BackendProbe(False, str(exc), "set BANGER_FCQEMU_ACCEL to auto, kvm or tcg")
    return BackendProbe(True, f"{found}, accelerator {accel} ({why})")


@hookimpl
def banger_vmm_backends() -> list[VMMBackend]:
    """banger-fcqemu: Firecracker's API, the guest's own kernel under QEMU (KVM or TCG)."""
    from banger_core import VMMBackend

    return [
        VMMBackend(
            name=NAME,
            program=PROGRAM,
            description="the guest's own kernel under QEMU",
            capabilities=("firecracker-api", "vsock", "real-kernel"),
            probe=probe,
        )
    ]
