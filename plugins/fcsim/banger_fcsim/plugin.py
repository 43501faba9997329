"""The banger plugin of banger-fcsim: registers the simulator as a VMM back-end."""

from __future__ import annotations

from typing import TYPE_CHECKING

from banger_core import hookimpl

if TYPE_CHECKING:
    from banger_core import Check, DoctorContext, VMMBackend

NAME = "fcsim"
PROGRAM = "banger-fcsim"


#: Programs the simulator runs besides the core's: program -> (why, Debian package).
PROGRAMS = {"ethtool": ("the simulator's guest network", "ethtool")}


@hookimpl
def banger_doctor_checks(ctx: DoctorContext) -> list[Check]:
    """The simulator's own programs, when the daemon runs VMs on it."""
    from pathlib import Path

    from banger_core import Check

    if Path(str(ctx.settings.get("firecracker", "binary"))).name != PROGRAM:
        return []
    checks = []
    for program, (purpose, package) in PROGRAMS.items():
        path = ctx.which(program)
        checks.append(
            Check(
                f"program {program}",
                bool(path),
                path or "not found",
                fix=f"apt install {package}  (needed for {purpose})",
            )
        )
    return checks


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
