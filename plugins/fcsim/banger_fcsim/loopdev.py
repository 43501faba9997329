"""Loop devices for the simulated virtio-block drives.

A drive's backing file is already open (Firecracker opens it at PUT time);
that fd is bound to a free loop device with ``LOOP_CONFIGURE`` and the
``AUTOCLEAR`` flag, so the device goes away by itself once the simulator's fd
is closed and the guest's mounts are gone, even after a SIGKILL. Falls back to
``losetup --find --show`` on kernels without ``LOOP_CONFIGURE``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import time
from dataclasses import dataclass

from banger_core import system

LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LOOP_CLR_FD = 0x4C01
LOOP_SET_STATUS64 = 0x4C04
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
_INFO = "QQQQQIIII64s64s32sQQ"


@dataclass
class LoopDevice:
    """An attached loop device that we hold open."""

    path: str
    fd: int
    major: int
    minor: int
    backing: str

    def close(self) -> None:
        """Clear and close (autoclear finishes the detach when the guest let go)."""
        with contextlib.suppress(OSError):
            fcntl.ioctl(self.fd, LOOP_CLR_FD, 0)
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _ensure_node(n: int) -> str:
    path = f"/dev/loop{n}"
    if not os.path.exists(path):
        with open(f"/sys/devices/virtual/block/loop{n}/dev") as fh:
            major, minor = (int(x) for x in fh.read().strip().split(":"))
        with contextlib.suppress(FileExistsError):
            os.mknod(path, 0o660 | 0o060000, os.makedev(major, minor))
    return path


def _info(path: str, flags: int) -> bytes:
    name = path.encode()[:63]
    return struct.pack(_INFO, 0, 0, 0, 0, 0, 0, 0, 0, flags, name, b"", b"", 0, 0)


def attach(backing_fd: int, backing_path: str, read_only: bool) -> LoopDevice:
    """Bind ``backing_fd`` to a free loop device (autoclear; read-only if asked)."""
    flags = LO_FLAGS_AUTOCLEAR | (LO_FLAGS_READ_ONLY if read_only else 0)
    ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for _attempt in range(50):
            n = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
            path = _ensure_node(n)
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            config = struct.pack("=II", backing_fd, 0) + _info(backing_path, flags) + bytes(64)
            try:
                fcntl.ioctl(fd, LOOP_CONFIGURE, config)
            except OSError as exc:
                os.close(fd)
                if exc.errno == errno.EBUSY:
                    time.sleep(0.01)
                    continue
                if exc.errno in (errno.EINVAL, errno.ENOTTY):
                    return _attach_losetup(backing_path, read_only)
                raise
            st = os.stat(path)
            return LoopDevice(path, fd, os.major(st.st_rdev), os.minor(st.st_rdev), backing_path)
        raise OSError(errno.EBUSY, "no free loop device")
    finally:
        os.close(ctl)


def _attach_losetup(backing_path: str, read_only: bool) -> LoopDevice:
    argv = ["losetup", "--find", "--show", *(["-r"] if read_only else []), backing_path]
    path = system.run(argv, timeout=30).stdout.strip()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    # Ask for autoclear: the device detaches when the last user closes it.
    with contextlib.suppress(OSError):
        flags = LO_FLAGS_AUTOCLEAR | (LO_FLAGS_READ_ONLY if read_only else 0)
        fcntl.ioctl(fd, LOOP_SET_STATUS64, _info(backing_path, flags))
    st = os.stat(path)
    return LoopDevice(path, fd, os.major(st.st_rdev), os.minor(st.st_rdev), backing_path)
