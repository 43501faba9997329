"""The serial console log: written by the guest, so bounded and never trusted.

The VMM appends the guest's serial output to ``<vm dir>/console.log``. A
guest can write without end and write anything (terminal escape sequences
included), so the daemon reads only the file's tail, shows only printable
text in messages, and keeps the file under :data:`MAX_BYTES` while the VM
runs (:func:`cap`, called from the daemon's watch loop).
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_BYTES = 16 << 20
"""A console log over this size is cut down to its last :data:`KEEP_BYTES`."""
KEEP_BYTES = 4 << 20
TAIL_BYTES = 65536
"""Bytes of the console read for messages (the end is what matters)."""
LINE_MAX = 300
"""Characters of one console line shown in a message."""


def printable(text: str, limit: int = LINE_MAX) -> str:
    """``text`` as one bounded line of printable characters (others become ``?``)."""
    text = "".join(ch if ch.isprintable() else "?" for ch in text[: limit + 1])
    return text if len(text) <= limit else text[:limit] + "..."


def tail_lines(path: Path, lines: int = 5) -> list[str]:
    """The last ``lines`` non-empty lines of the console, printable and bounded."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - TAIL_BYTES))
            text = fh.read().decode(errors="replace")
    except OSError:
        return []
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return [printable(line) for line in kept[-lines:]]


def cap(path: Path, max_bytes: int = MAX_BYTES, keep_bytes: int = KEEP_BYTES) -> bool:
    """Cut the console log to its last ``keep_bytes`` when it grew past ``max_bytes``.

    The VMM holds the file open in append mode, so it is cut in place (never
    replaced): the kept tail is written over the file's start, then the file
    is truncated after it, so a reader never sees it empty; the VMM's next
    write lands after the kept tail. Returns whether the file was cut.
    """
    try:
        if os.stat(path).st_size <= max_bytes:
            return False
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            tail = os.pread(fd, keep_bytes, max(0, size - keep_bytes))
            data = b"[banger: console log cut to its last %d bytes]\n" % len(tail) + tail
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)
    except OSError:
        return False
    return True
