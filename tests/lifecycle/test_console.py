"""The serial console log is the guest's: read its tail only, shown printable, kept bounded."""

from __future__ import annotations

import os
from pathlib import Path

from banger_core.lifecycle import console


def test_cap_keeps_the_tail_and_the_vmm_keeps_appending(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    vmm = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)  # as the launcher opens it
    try:
        os.write(vmm, b"x" * 5000 + b"\nlast line before\n")
        assert not console.cap(log, max_bytes=10_000, keep_bytes=100)  # small enough
        os.write(vmm, b"y" * 10_000 + b"\nnewest\n")
        assert console.cap(log, max_bytes=10_000, keep_bytes=100)
        os.write(vmm, b"after the cut\n")
    finally:
        os.close(vmm)
    data = log.read_bytes()
    assert data.startswith(b"[banger: console log cut to its last 100 bytes]\n")
    assert data.endswith(b"y\nnewest\nafter the cut\n")
    assert len(data) < 200


def test_tail_lines_are_printable_bounded_and_read_from_the_end(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    with open(log, "wb") as fh:
        fh.write(b"early line\n" * 200_000)  # 2.2 MB: only the tail is read
        fh.write(b"\x1b]0;owned\x07\x1b[2Jcleared\n")
        fh.write(b"z" * 5000 + b"\n")
        fh.write(b"\xff\xfe not utf-8\n")
    lines = console.tail_lines(log, 3)
    assert lines[0] == "?]0;owned??[2Jcleared"
    assert lines[1] == "z" * console.LINE_MAX + "..."
    assert lines[2] == "\ufffd\ufffd not utf-8"
    assert console.tail_lines(tmp_path / "missing") == []
