"""Space on the state file system: thin-provisioning overcommit, a write reserve, full-disk errors.

VM disks are sparse: a disk of 8G costs only what the guest wrote. The sum
of what they may still grow can exceed the free space (overcommit); when a
guest then fills its disk, the host runs out under it. banger warns when
that happens (create, grow, ``doctor``) instead of failing silently.

The store needs a little room to record what happens even on a full file
system (a killed VM must not stay listed running): :class:`Reserve` keeps a
small file that is given up to let such a write through.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from banger_core.errors import BangerError
from banger_core.units import format_size

RESERVE_BYTES = 4 << 20
DISK_SUFFIXES = (".ext4", ".cow", ".img")


@dataclass
class Usage:
    """How much the VMs' sparse disks may still grow, and how much is free."""

    mount: str
    free: int
    growth: int
    disks: int

    @property
    def overcommitted(self) -> bool:
        """Whether the disks could outgrow the free space."""
        return self.growth > self.free

    def describe(self) -> str:
        """One line for warnings and ``doctor``."""
        return (
            f"{self.disks} VM disk(s) may still grow by {_mib(self.growth)} but only "
            f"{_mib(self.free)} is free on {self.mount}"
        )


def _mib(n: int) -> str:
    return format_size(n) if n % (1 << 20) == 0 else f"{n / (1 << 20):.0f}M"


def mount_point(path: Path) -> str:
    """The mount point of the file system holding ``path``."""
    path = Path(os.path.realpath(path))
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return str(path)


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on ``path``'s file system."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def usage(vms_dir: Path) -> Usage:
    """Thin-provisioning state of every VM disk under ``vms_dir``."""
    growth = disks = 0
    for vm_dir in vms_dir.iterdir() if vms_dir.exists() else []:
        for disk in vm_dir.iterdir() if vm_dir.is_dir() else []:
            if disk.suffix not in DISK_SUFFIXES:
                continue
            try:
                st = disk.stat()
            except OSError:
                continue
            disks += 1
            growth += max(0, st.st_size - st.st_blocks * 512)
    target = vms_dir if vms_dir.exists() else vms_dir.parent
    return Usage(mount_point(target), free_bytes(target), growth, disks)


def overcommit_warning(vms_dir: Path) -> str | None:
    """A warning line when the VMs' disks could outgrow the free space."""
    u = usage(vms_dir)
    if not u.overcommitted:
        return None
    return (
        f"thin-provisioning overcommit: {u.describe()}; a guest filling its disk would "
        "fail with I/O errors (free space, or use smaller --disk-size)"
    )


def check_room(path: Path, need: int, what: str) -> None:
    """Refuse, with one line naming the file system and the need, when ``need`` does not fit."""
    free = free_bytes(path)
    if free < need:
        raise BangerError(
            f"not enough space for {what} on {mount_point(path)}: needs about "
            f"{_mib(need)}, {_mib(free)} free; free some space and retry"
        )


def allocated(path: Path) -> int:
    """Bytes a (sparse) file really uses."""
    try:
        return path.stat().st_blocks * 512
    except OSError:
        return 0


class Reserve:
    """A small file given up so that the store can record state on a full file system."""

    def __init__(self, path: Path, size: int = RESERVE_BYTES) -> None:
        self.path = path
        self.size = size

    def ensure(self) -> None:
        """(Re)create the reserve when there is room; quietly skip when there is not."""
        if self.path.exists():
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)
            finally:
                os.close(fd)
        except OSError:
            self.path.unlink(missing_ok=True)

    def release(self) -> bool:
        """Give the reserve up; True when there was one."""
        try:
            self.path.unlink()
            return True
        except FileNotFoundError:
            return False


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` means the file system (or SQLite's file) is full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "database or disk is full" in str(exc)


def full_error(path: Path) -> BangerError:
    """The one-line error for a full state file system."""
    return BangerError(
        f"the state file system {mount_point(path)} is full "
        f"({_mib(free_bytes(path))} free): free some space (a few MB lets "
        "banger record state; a VM needs its root disk's size) and retry"
    )
