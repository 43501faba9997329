"""The banger plugin of banger-fcsim: registers the simulator as a VMM back-end."""

from __future__ import annotations

from typing import TYPE_CHECKING

from banger_core import hookimpl

if TYPE_CHECKING:
    from banger_core import VMMBackend

NAME = "fcsim"
PROGRAM = "banger-fcsim"


@hookimpl
def banger_vmm_backends() -> list[VMMBackend]:
    """The Firecracker simulator: Firecracker's API, a namespace guest, no real kernel."""
    from banger_core import VMMBackend

    return [
        VMMBackend(
            name=NAME,
            program=PROGRAM,
            description="the Firecracker simulator, no real VMs",
            capabilities=("firecracker-api", "vsock", "simulated-guest"),
        )
    ]
