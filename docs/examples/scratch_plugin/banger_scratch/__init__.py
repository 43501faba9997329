"""banger-scratch: a per-VM scratch disk, written against the public API only.

It declares a per-VM option (``vm create --scratch-size 1G``), makes a sparse
ext4 file per VM with an undo, attaches it as a drive and mounts it in the
guest at ``/scratch`` (the device comes from ``machine.add_drive``), adds
``banger vm scratch REF`` and the RPC method ``scratch.show`` that looks the VM
up, and removes the disk on delete. Everything comes from ``banger_core``
itself; this module stays cheap to import (the CLI may load it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from banger_core import hookimpl

if TYPE_CHECKING:
    import click

    from banger_core import (
        VM,
        GuestConfig,
        LifecycleContext,
        MachineSpec,
        Option,
        RPCCall,
        VMOption,
    )

NAME = "scratch"
FILE = "scratch.ext4"


def disk_path(vm: VM) -> Path:
    """Where a VM's scratch disk lives."""
    return Path(vm.dir) / FILE


@hookimpl
def banger_config_defaults() -> dict[str, Option]:
    from banger_core import Option

    return {
        "mount_point": Option("/scratch", "where the scratch disk is mounted in the guest"),
        "default_size": Option("256M", "scratch disk size of a new VM"),
    }


def check_size(value: int) -> int:
    """Scratch disks are 16M to 64G."""
    from banger_core import ValidationError, format_size

    if not 16 << 20 <= value <= 64 << 30:
        raise ValidationError(f"--scratch-size {format_size(value)} is not allowed: use 16M to 64G")
    return value


@hookimpl
def banger_vm_options() -> list[VMOption]:
    from banger_core import VMOption

    return [
        VMOption(
            "scratch-size",
            "size",
            "256M",
            "scratch disk size (/scratch)",
            config_key="default_size",
            validator=check_size,
            on_set=False,
        )
    ]


@hookimpl
def banger_vm_create(vm: VM, ctx: LifecycleContext) -> None:
    path = disk_path(vm)
    size = vm.plugin_options(NAME)["scratch_size"]
    with open(path, "wb") as fh:
        fh.truncate(size)
    ctx.add_undo(lambda: path.unlink(missing_ok=True), f"remove {path}")
    ctx.runner(["mkfs.ext4", "-q", "-F", "-L", "scratch", str(path)])
    ctx.failpoint("after-mkfs")
    vm.plugin_state(NAME).update({"path": str(path), "size": size})


@hookimpl
def banger_vm_configure(
    vm: VM, machine: MachineSpec, guest: GuestConfig, ctx: LifecycleContext
) -> None:
    path = disk_path(vm)
    if not path.exists():
        return  # a VM created before the plugin was installed has no scratch disk
    device = machine.add_drive("scratch", str(path))  # the only way to learn the device
    guest.add_mount(device, str(ctx.config["mount_point"]))


@hookimpl
def banger_vm_deleted(vm: VM, ctx: LifecycleContext) -> None:
    disk_path(vm).unlink(missing_ok=True)


@hookimpl
def banger_rpc_methods() -> dict[str, Any]:
    return {"scratch.show": show}


def show(params: dict[str, Any], call: RPCCall) -> dict[str, Any]:
    """``scratch.show``: ``{"ref": "box"}`` -> the VM's scratch disk."""
    from banger_core import ValidationError

    ref = params.get("ref")
    if not isinstance(ref, str) or not ref:
        raise ValidationError("scratch.show: 'ref' (a VM name or id) is required")
    vm = call.vm(ref)  # NotFoundError / ambiguous prefix errors exactly like the core's
    path = disk_path(vm)
    return {
        "name": vm.name,
        "path": str(path),
        "exists": path.exists(),
        "size": vm.plugin_options(NAME)["scratch_size"],
        "mount_point": call.config["mount_point"],
    }


@hookimpl
def banger_cli_subcommands() -> dict[str, list[click.Command]]:
    import click

    @click.command("scratch")
    @click.argument("ref")
    @click.option("--json", "as_json", is_flag=True, help="print JSON")
    def scratch(ref: str, as_json: bool) -> None:
        """Show a VM's scratch disk."""
        from banger_core import emit_json, format_size, rpc

        info = rpc("scratch.show", {"ref": ref})
        if as_json:
            emit_json(info)
            return
        click.echo(
            f"{info['name']}: {format_size(info['size'])} at {info['mount_point']} ({info['path']})"
        )

    return {"vm": [scratch]}
