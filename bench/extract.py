"""Extraction throughput: ``banger_core.extract_tar`` next to ``tarfile.extractall``.

Two archives built in memory: 20,000 files of 1 KiB in 100 directories (the
per-member cost: a directory-descriptor walk, ``O_EXCL`` temp file, rename)
and 4 files of 64 MiB (the copy loop). Each is extracted into a fresh
directory under /tmp by both; prints seconds, MB/s and files/s.

Run with ``make bench`` or ``.venv/bin/python bench/extract.py``.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
import time

from banger_core import extract_tar


def make(count: int, size: int) -> bytes:
    """An uncompressed pax archive of ``count`` files of ``size`` bytes."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(count):
            info = tarfile.TarInfo(f"top/d{i % 100}/f{i}")
            info.size = size
            tar.addfile(info, io.BytesIO(b"x" * size))
    return out.getvalue()


def main() -> None:
    """Run both extractors on both archives."""
    for count, size in ((20000, 1024), (4, 64 << 20)):
        data = make(count, size)
        for name in ("extract_tar", "tarfile"):
            dest = tempfile.mkdtemp(prefix="bench-extract-", dir="/tmp")
            try:
                started = time.monotonic()
                if name == "extract_tar":
                    extract_tar(io.BufferedReader(io.BytesIO(data)), dest)
                else:
                    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
                        tar.extractall(dest)  # our own archive: trusted
                took = time.monotonic() - started
            finally:
                shutil.rmtree(dest)
            print(
                f"{name:12s} {count:6d} files x {size:9d} B: {took:6.2f}s "
                f"({len(data) / took / 1e6:6.1f} MB/s, {count / took:7.0f} files/s)"
            )


if __name__ == "__main__":
    main()
