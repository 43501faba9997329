"""The workdisk plugin's hooks. Cheap to import: the CLI loads this module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from banger_core import hookimpl

NAME = "workdisk"
FILE = "work.ext4"


def _path(vm: Any) -> Path:
    return Path(vm.dir) / FILE


@hookimpl
def banger_config_defaults() -> dict[str, Any]:
    from banger_core.pluginconfig import Option

    return {
        "mount_point": Option("/root", "where the work disk is mounted in the guest"),
    }


@hookimpl
def banger_doctor_checks(ctx: Any) -> list[Any]:
    from banger_core.doctor import Check

    checks = []
    for program in ("e2fsck", "resize2fs", "mkfs.ext4"):
        path = ctx.which(program)
        checks.append(Check(f"program {program}", bool(path), path or "not found",
                            fix="apt install e2fsprogs", required=True))
    return checks


@hookimpl
def banger_vm_create(vm: Any, ctx: Any) -> None:
    from banger_workdisk.disk import create_work_disk, remove

    path = _path(vm)
    seed = Path(vm.image.work_seed) if vm.image.work_seed else None
    create_work_disk(path, vm.disk_size, seed, ctx.runner)
    ctx.add_undo(lambda: remove(path), f"work disk {path}")
    vm.plugin_state(NAME).update({"path": str(path), "size": vm.disk_size,
                                  "seeded": seed is not None,
                                  "mount_point": ctx.plugin_config(NAME)["mount_point"]})


@hookimpl
def banger_vm_configure(vm: Any, machine: Any, guest: Any) -> None:
    from banger_core.errors import BangerError

    path = _path(vm)
    if not path.exists():
        raise BangerError(f"VM {vm.name}: work disk {path} is missing")
    device = machine.add_drive("work", str(path))
    mount_point = vm.plugin_state(NAME).get("mount_point", "/root")
    guest.add_mount(device, mount_point, "ext4", "defaults")


@hookimpl
def banger_vm_set(vm: Any, changes: dict[str, Any], ctx: Any) -> None:
    if "disk_size" not in changes:
        return
    from banger_workdisk.disk import grow

    grow(_path(vm), changes["disk_size"], ctx.runner)
    vm.plugin_state(NAME)["size"] = changes["disk_size"]


@hookimpl
def banger_vm_deleted(vm: Any) -> None:
    from banger_workdisk.disk import remove

    remove(_path(vm))
