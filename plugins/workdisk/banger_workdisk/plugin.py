"""The workdisk plugin's hooks. Cheap to import: the CLI may load this module.

Everything the work disk needs lives here, behind hooks: the image's /root
becomes a work-seed artifact at build time (``banger_image_artifacts``),
``--disk-size`` is this plugin's per-VM option (``banger_vm_options``), and
each VM gets a sparse clone of the seed grown to that size, mounted at
``/root``. Disable the plugin and images keep /root in the root file system,
``vm create`` has no ``--disk-size``, and VMs get no work disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from banger_core import hookimpl

if TYPE_CHECKING:
    from banger_core import (
        VM,
        Check,
        DaemonAPI,
        DoctorContext,
        GuestConfig,
        ImageArtifact,
        ImageBuildContext,
        LifecycleContext,
        MachineSpec,
        Option,
        VMOption,
        VMSpec,
    )

NAME = "workdisk"
FILE = "work.ext4"
ARTIFACT = "work-seed"
SEED_FILE = "work-seed.ext4"
MIN_SIZE = 64 << 20

_state_dir: list[Path] = []  # set when the daemon starts: sizes are checked against its fs


def _path(vm: VM) -> Path:
    return Path(vm.dir) / FILE


def _size(vm: VM) -> int:
    """The VM's work disk size: its option, or what older VMs recorded."""
    state = vm.plugin_state(NAME)
    stored = vm.options.get(NAME, {}).get("disk_size")
    if stored is None and state.get("size"):
        return int(state["size"])
    return int(vm.plugin_options(NAME)["disk_size"])


@hookimpl
def banger_config_defaults() -> dict[str, Option]:
    from banger_core import Option

    return {
        "mount_point": Option("/root", "where the work disk is mounted in the guest"),
        "default_size": Option("8G", "work disk size of a new VM (vm create --disk-size)"),
        "seed_min_mib": Option(64, "smallest work seed an image build makes, in MiB"),
    }


def check_size(value: int) -> int:
    """A work disk size: at least 64M and at most the state file system's size."""
    import os

    from banger_core import ValidationError, format_size

    where = str(_state_dir[0]) if _state_dir and _state_dir[0].exists() else "/"
    st = os.statvfs(where)
    limit = st.f_blocks * st.f_frsize
    if not MIN_SIZE <= value <= limit:
        raise ValidationError(
            f"--disk-size {format_size(value)} is not allowed: use "
            f"{format_size(MIN_SIZE)} to {format_size(limit, limit=True)} (the size of "
            f"{where}'s file system)"
        )
    return value


@hookimpl
def banger_vm_options() -> list[VMOption]:
    from banger_core import VMOption

    return [
        VMOption(
            "disk-size",
            "size",
            "8G",
            "work disk size (/root), e.g. 20G; grows only",
            config_key="default_size",
            validator=check_size,
        )
    ]


@hookimpl
def banger_daemon_started(daemon: DaemonAPI) -> None:
    _state_dir[:] = [Path(daemon.state_dir)]


@hookimpl
def banger_vm_validate(spec: VMSpec) -> None:
    new = spec.options.get(NAME, {}).get("disk_size")
    if spec.is_create or new is None or spec.vm is None:
        return
    from banger_core import ValidationError, format_size

    current = _size(spec.vm)
    if new < current:
        raise ValidationError(
            f"--disk-size {format_size(new)} is smaller than the current "
            f"{format_size(current)}; disks only grow"
        )


@hookimpl
def banger_doctor_checks(ctx: DoctorContext) -> list[Check]:
    from banger_core import Check

    checks = []
    for program in ("e2fsck", "resize2fs", "mkfs.ext4"):
        path = ctx.which(program)
        checks.append(
            Check(
                f"program {program}",
                bool(path),
                path or "not found",
                fix="apt install e2fsprogs",
                required=True,
                # growing a disk (vm set --disk-size) runs e2fsck and resize2fs
                needed_by=("vm.set --disk-size",) if program != "mkfs.ext4" else (),
            )
        )
    return checks


@hookimpl
def banger_image_artifacts(
    image: dict[str, Any], root: Path, ctx: ImageBuildContext
) -> list[ImageArtifact]:
    """Move the image's /root into a work-seed ext4 image; /root stays an empty mount point."""
    from banger_core import ImageArtifact
    from banger_workdisk.disk import LABEL, split_home

    tree = ctx.out_dir / "workdisk-home"
    split_home(root, tree)
    seed = ctx.make_ext4(
        tree,
        ctx.out_dir / SEED_FILE,
        label=LABEL,
        min_size_mib=int(ctx.config.get("seed_min_mib", 64)),
        root_mode=0o700,
    )
    return [ImageArtifact(ARTIFACT, seed)]


def _make_disk(vm: VM, ctx: LifecycleContext) -> None:
    from banger_workdisk.disk import create_work_disk, remove

    path = _path(vm)
    seed_path = vm.image.artifact(ARTIFACT)
    seed = Path(seed_path) if seed_path else None
    size = _size(vm)
    create_work_disk(path, size, seed, ctx.runner)
    ctx.add_undo(lambda: remove(path), f"work disk {path}")
    vm.plugin_state(NAME).update(
        {
            "path": str(path),
            "size": size,
            "seeded": seed is not None,
            "mount_point": ctx.config["mount_point"],
        }
    )


@hookimpl
def banger_vm_create(vm: VM, ctx: LifecycleContext) -> None:
    _make_disk(vm, ctx)


@hookimpl
def banger_vm_configure(
    vm: VM, machine: MachineSpec, guest: GuestConfig, ctx: LifecycleContext
) -> None:
    path = _path(vm)
    if not path.exists():
        if vm.plugin_state(NAME).get("path"):
            from banger_core import BangerError

            raise BangerError(f"VM {vm.name}: work disk {path} is missing")
        # A VM created before this plugin was installed: give it a disk now.
        _make_disk(vm, ctx)
    device = machine.add_drive("work", str(path))
    mount_point = vm.plugin_state(NAME).get("mount_point", "/root")
    guest.add_mount(device, mount_point, "ext4", "defaults")


@hookimpl
def banger_vm_set(vm: VM, changes: dict[str, Any], ctx: LifecycleContext) -> None:
    if "disk_size" not in changes or not _path(vm).exists():
        return
    from banger_workdisk.disk import grow

    grow(_path(vm), changes["disk_size"], ctx.runner)
    vm.plugin_state(NAME)["size"] = changes["disk_size"]


@hookimpl
def banger_vm_deleted(vm: VM, ctx: LifecycleContext) -> None:
    from banger_workdisk.disk import remove

    remove(_path(vm))
