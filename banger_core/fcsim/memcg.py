"""A memory cgroup holding the simulated guest to ``mem_size_mib`` (v1 or v2).

A real guest has exactly the memory the machine config gives it; running out
inside it wakes the guest's OOM killer. The simulator puts the guest's
processes into a memory cgroup with that limit (and no swap), so the same
happens to them. Hosts with neither a v1 memory hierarchy nor a v2 one with
the memory controller get no limit (logged).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
GROUP_PREFIX = "banger-fcsim-"


def own_cgroup(controller: str | None, proc_cgroup: str = "/proc/self/cgroup") -> str:
    """This process's cgroup path in the v1 hierarchy of ``controller`` (None: the v2 one)."""
    with contextlib.suppress(OSError):
        for line in Path(proc_cgroup).read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            names = controllers.split(",") if controllers else []
            if (controller is None and not names) or controller in names:
                return path.lstrip("/")
    return ""


def _v2_parent(root: Path) -> Path | None:
    parent = root / own_cgroup(None)
    controllers = parent / "cgroup.controllers"
    if not controllers.exists() or "memory" not in controllers.read_text().split():
        return None
    control = parent / "cgroup.subtree_control"
    with contextlib.suppress(OSError):
        if "memory" not in control.read_text().split():
            control.write_text("+memory")  # EBUSY when the parent holds processes itself
    with contextlib.suppress(OSError):
        if "memory" in control.read_text().split():
            return parent
    return None


def create(token: str, mem_mib: int, root: Path = CGROUP_ROOT) -> tuple[Path | None, str]:
    """Make the guest's cgroup; return ``(directory, how)`` (``None`` and why when impossible).

    It is made below the simulator's own cgroup, so limits set above it
    still apply to the guest.
    """
    limit = mem_mib * 1024 * 1024
    v1 = root / "memory" / own_cgroup("memory")
    try:
        if (v1 / "memory.limit_in_bytes").exists():
            group = v1 / f"{GROUP_PREFIX}{token}"
            group.mkdir(exist_ok=True)
            (group / "memory.limit_in_bytes").write_text(str(limit))
            with contextlib.suppress(OSError):  # absent without swap accounting
                (group / "memory.memsw.limit_in_bytes").write_text(str(limit))
            with contextlib.suppress(OSError):
                (group / "memory.swappiness").write_text("0")
            return group, f"cgroup v1 {group} limit {mem_mib} MiB"
        v2 = _v2_parent(root)
        if v2 is not None:
            group = v2 / f"{GROUP_PREFIX}{token}"
            group.mkdir(exist_ok=True)
            (group / "memory.max").write_text(str(limit))
            with contextlib.suppress(OSError):
                (group / "memory.swap.max").write_text("0")
            return group, f"cgroup v2 {group} limit {mem_mib} MiB"
    except OSError as exc:
        return None, f"no memory cgroup ({exc.strerror or exc}); guest memory is not limited"
    return None, "no memory cgroup controller on this host; guest memory is not limited"


def procs_file(group: Path) -> Path:
    """The file a process writes its PID into to join ``group`` (v1 and v2 both)."""
    return group / "cgroup.procs"


def remove(group: str | Path, timeout: float = 5.0) -> bool:
    """Remove the cgroup once its processes are gone; True when it is gone."""
    group = Path(group)
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(group)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
