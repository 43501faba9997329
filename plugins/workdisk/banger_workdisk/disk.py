"""Making, growing and removing work disk files (sparse ext4 images)."""

from __future__ import annotations

import os
from pathlib import Path

from banger_core import BangerError, Runner, ValidationError, run

LABEL = "banger-work"


def create_work_disk(dest: Path, size: int, seed: Path | None, runner: Runner = run) -> Path:
    """Clone ``seed`` (or make an empty ext4) at ``dest``, grown to ``size`` bytes.

    The clone is sparse (or a reflink where the file system can), so a 20G
    disk costs only what the seed holds. Written under a temporary name and
    renamed, so a failure leaves nothing.
    """
    if dest.exists():
        raise BangerError(f"work disk {dest} already exists")
    tmp = dest.with_name(dest.name + ".partial")
    try:
        if seed is not None:
            seed_size = seed.stat().st_size
            if size < seed_size:
                raise ValidationError(
                    f"disk size {size} is smaller than the image's work seed ({seed_size} bytes)"
                )
            runner(["cp", "--reflink=auto", "--sparse=always", str(seed), str(tmp)])
            grow(tmp, size, runner)
        else:
            with open(tmp, "wb") as fh:
                fh.truncate(size)
            runner(["mkfs.ext4", "-q", "-F", "-L", LABEL, str(tmp)])
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def grow(path: Path, size: int, runner: Runner = run) -> None:
    """Grow the file to ``size`` bytes and its ext4 file system to fill it."""
    current = path.stat().st_size
    if size < current:
        raise ValidationError(f"work disk cannot shrink from {current} to {size} bytes")
    if size == current:
        return
    os.truncate(path, size)
    # resize2fs insists on a freshly checked file system; -p fixes safe problems only.
    result = runner(["e2fsck", "-f", "-p", str(path)], check=False)
    if result.returncode not in (0, 1):
        raise BangerError(
            f"e2fsck {path} failed ({result.returncode}): "
            f"{(result.stderr or result.stdout).strip()}"
        )
    runner(["resize2fs", str(path)])


def remove(path: Path) -> None:
    """Delete a work disk (missing is fine)."""
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".partial").unlink(missing_ok=True)


def split_home(root: Path, tree: Path) -> None:
    """Move the content of ``root/root`` into the new directory ``tree``; /root stays empty.

    ``tree`` gets /root's owner and mode, so the seed's root directory matches.
    """
    import stat

    home = root / "root"
    home.mkdir(mode=0o700, exist_ok=True)
    tree.mkdir(mode=0o700)
    st = home.stat()
    os.chown(tree, st.st_uid, st.st_gid)
    tree.chmod(stat.S_IMODE(st.st_mode))
    for entry in list(home.iterdir()):
        os.rename(entry, tree / entry.name)
