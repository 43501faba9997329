"""Rust ``io::Error`` text as Firecracker's (musl) release builds print it."""

from __future__ import annotations

import errno
import os

MUSL_STRERROR = {
    errno.EPERM: "Operation not permitted",
    errno.ENOENT: "No such file or directory",
    errno.ENXIO: "No such device or address",
    errno.EACCES: "Permission denied",
    errno.EBUSY: "Resource busy",
    errno.EEXIST: "File exists",
    errno.ENODEV: "No such device",
    errno.ENOTDIR: "Not a directory",
    errno.EISDIR: "Is a directory",
    errno.EINVAL: "Invalid argument",
    errno.EMFILE: "No file descriptors available",
    errno.EROFS: "Read-only file system",
    errno.ENAMETOOLONG: "Filename too long",
    errno.ELOOP: "Symbolic link loop",
    errno.ENOTSOCK: "Not a socket",
    errno.EADDRINUSE: "Address in use",
    errno.EADDRNOTAVAIL: "Address not available",
    errno.ECONNREFUSED: "Connection refused",
}


def io_error(exc: OSError) -> str:
    """``<strerror> (os error N)`` like Rust's ``Display`` for ``io::Error``."""
    num = exc.errno or 0
    text = MUSL_STRERROR.get(num) or (os.strerror(num) if num else str(exc))
    return f"{text} (os error {num})"
