"""A memory cgroup holding the simulated guest to ``mem_size_mib`` (v1 or v2).

A real guest has exactly the memory the machine config gives it; running out
inside it wakes the guest's OOM killer. The simulator puts the guest's
processes into a memory cgroup with that limit (and no swap), so the same
happens to them. Hosts with neither a v1 memory hierarchy nor a v2 one with
the memory controller get no limit (logged).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
GROUP_PREFIX = "banger-fcsim-"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
MNT_DETACH = 2


def _mount(source: str, target: str, fstype: str, data: str | None) -> bool:
    ret = _libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode(),
        ctypes.c_ulong(0),
        None if data is None else data.encode(),
    )
    return bool(ret == 0)


def unmount(target: str | Path) -> None:
    """Detach a cgroup file system this module mounted (no error when it is gone)."""
    _libc.umount2(str(target).encode(), MNT_DETACH)


def own_cgroup(controller: str | None, proc_cgroup: str = "/proc/self/cgroup") -> str:
    """This process's cgroup path in the v1 hierarchy of ``controller`` (None: the v2 one)."""
    with contextlib.suppress(OSError):
        for line in Path(proc_cgroup).read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            names = controllers.split(",") if controllers else []
            if (controller is None and not names) or controller in names:
                return path.lstrip("/")
    return ""


def _hierarchies(root: Path, private_dir: Path | None) -> tuple[Path | None, Path | None, str]:
    """``(v1 memory hierarchy, v2 hierarchy, mounted dir)``.

    ``ip netns exec`` remounts /sys without cgroupfs; then the memory
    hierarchy (or cgroup2) is mounted at ``private_dir`` (returned so it is
    unmounted at cleanup).
    """
    if (root / "memory" / "memory.limit_in_bytes").exists():
        return root / "memory", None, ""
    if (root / "cgroup.controllers").exists():
        return None, root, ""
    if private_dir is None:
        return None, None, ""
    private_dir.mkdir(parents=True, exist_ok=True)
    if _mount("cgroup", str(private_dir), "cgroup", "memory"):
        return private_dir, None, str(private_dir)
    if _mount("cgroup2", str(private_dir), "cgroup2", None):
        return None, private_dir, str(private_dir)
    return None, None, ""


def _v2_parent(v2: Path) -> Path | None:
    parent = v2 / own_cgroup(None)
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


def create(
    token: str, mem_mib: int, *, private_dir: Path | None = None, root: Path = CGROUP_ROOT
) -> tuple[Path | None, str, str]:
    """Make the guest's cgroup: ``(directory or None, how, mounted dir or "")``.

    It is made below the simulator's own cgroup, so limits set above it
    still apply to the guest.
    """
    limit = mem_mib * 1024 * 1024
    mounted = ""
    try:
        v1, v2, mounted = _hierarchies(root, private_dir)
        if v1 is not None:
            group = v1 / own_cgroup("memory") / f"{GROUP_PREFIX}{token}"
            group.mkdir(exist_ok=True)
            (group / "memory.limit_in_bytes").write_text(str(limit))
            with contextlib.suppress(OSError):  # absent without swap accounting
                (group / "memory.memsw.limit_in_bytes").write_text(str(limit))
            with contextlib.suppress(OSError):
                (group / "memory.swappiness").write_text("0")
            return group, f"cgroup v1 {group} limit {mem_mib} MiB", mounted
        parent = _v2_parent(v2) if v2 is not None else None
        if parent is not None:
            group = parent / f"{GROUP_PREFIX}{token}"
            group.mkdir(exist_ok=True)
            (group / "memory.max").write_text(str(limit))
            with contextlib.suppress(OSError):
                (group / "memory.swap.max").write_text("0")
            return group, f"cgroup v2 {group} limit {mem_mib} MiB", mounted
    except OSError as exc:
        if mounted:
            unmount(mounted)
        return None, f"no memory cgroup ({exc.strerror or exc}); guest memory is not limited", ""
    if mounted:
        unmount(mounted)
    return None, "no memory cgroup controller on this host; guest memory is not limited", ""


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
