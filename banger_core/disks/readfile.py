"""Read a file from a stopped VM's drive on the host, without booting or mounting it.

Uses ``debugfs`` (e2fsprogs, which banger needs anyway) in read-only mode on
the drive's ext4 image: no loop device, no mount, nothing the guest could
influence beyond the bytes returned (treat them as untrusted input).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from banger_core.errors import BangerError, ConflictError, NotFoundError, ValidationError
from banger_core.system import Runner, run

if TYPE_CHECKING:
    from banger_core.lifecycle.vm import VM

DEFAULT_LIMIT = 16 << 20
"""Bytes :func:`read_vm_file` returns at most, unless told otherwise."""

_LIVE_STATES = ("creating", "starting", "running", "stopping")


def read_vm_file(
    vm: VM,
    path: str,
    *,
    drive: str | os.PathLike[str] | None = None,
    limit: int = DEFAULT_LIMIT,
    runner: Runner = run,
) -> bytes:
    """The contents of file ``path`` on one of a **stopped** VM's drives.

    :param vm: the VM (``call.vm(ref)``, or a hook's ``vm``).
    :param path: the file's absolute path inside the drive's file system (on
        a drive the guest mounts at ``/root``, ``/root/.bashrc`` is ``/.bashrc``).
    :param drive: the host path of the drive's ext4 image (a plugin's own
        disk, such as the work disk's ``vm.plugin_state("workdisk")["path"]``);
        the VM's root disk when omitted.
    :param limit: the most bytes returned; a larger file is refused.
    :raise banger_core.ConflictError: the VM is not stopped (its drives change under it).
    :raise banger_core.NotFoundError: no such file on the drive.
    :raise banger_core.ValidationError: ``path`` is not an absolute path, or
        names a directory, or the file is larger than ``limit``.
    :raise banger_core.BangerError: the drive cannot be read as ext4 (a
        dm-snapshot root disk, for one, is not a plain image).
    """
    if vm.state in _LIVE_STATES or vm.pid:
        raise ConflictError(
            f"VM {vm.name} is {vm.state}; stop it before reading its drives from the host"
        )
    if not path.startswith("/") or any(c in path for c in '"\n\r\0') or "/../" in f"{path}/":
        raise ValidationError(
            f"path {path!r} must be absolute, without '..', quotes or line breaks"
        )
    image = Path(drive if drive is not None else vm.root_disk)
    if drive is None and vm.root_strategy == "dm-snapshot":
        raise BangerError(
            f"VM {vm.name}'s root disk is a dm-snapshot, not a file system image; "
            "read a file of a plugin's drive instead, or start the VM"
        )
    if not image.is_file():
        raise NotFoundError(f"VM {vm.name} has no drive {image}")
    with tempfile.TemporaryDirectory(prefix="banger-read-") as tmp:
        stat = runner(["debugfs", "-R", f'stat "{path}"', str(image)], check=False)
        if "File not found" in stat.stderr or stat.returncode != 0:
            raise NotFoundError(f"no file {path} on {image.name} of VM {vm.name}")
        kind = next((line for line in stat.stdout.splitlines() if "Type:" in line), "")
        if "regular" not in kind:
            raise ValidationError(f"{path} on {image.name} of VM {vm.name} is not a regular file")
        size = _size(stat.stdout)
        if size is not None and size > limit:
            raise ValidationError(
                f"{path} on {image.name} of VM {vm.name} is {size} bytes, more than {limit}"
            )
        out = Path(tmp) / "file"
        runner(["debugfs", "-R", f'dump "{path}" {out}', str(image)])
        if not out.exists():
            raise NotFoundError(f"no file {path} on {image.name} of VM {vm.name}")
        with open(out, "rb") as fh:
            data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValidationError(f"{path} on {image.name} of VM {vm.name} is larger than {limit}")
    return data


def _size(stat_output: str) -> int | None:
    """The ``Size:`` field of debugfs's ``stat`` output."""
    for word, value in zip(stat_output.split(), stat_output.split()[1:], strict=False):
        if word == "Size:" and value.isdigit():
            return int(value)
    return None
