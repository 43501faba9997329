"""``banger image ...``: build, register, list, show, delete."""

from __future__ import annotations

import click

from banger_core.cli.context import rpc
from banger_core.cli.output import emit_json, human_bytes, table


@click.group()
def image() -> None:
    """Build and manage images."""


@image.command()
@click.argument("name")
@click.option("--os", "os_name", default="debian", show_default=True, help="guest OS recipe")
def build(name: str, os_name: str) -> None:
    """Build an image from a guest OS recipe (live stages) and register it."""
    from banger_core.cli.vm_cmds import follow_operation

    result = follow_operation(rpc("image.build", {"name": name, "os": os_name}))
    click.echo(f"image {result['name']} built ({human_bytes(result['size'])})")


@image.command()
@click.argument("name")
@click.option("--kernel", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--rootfs", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--initrd", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--artifact",
    "artifacts",
    multiple=True,
    metavar="NAME=PATH",
    help="a plugin's image artifact, NAME=PATH, e.g. work-seed=/path/work-seed.ext4 "
    "(repeatable; `banger plugins` shows which plugins make artifacts)",
)
@click.option(
    "--work-seed",
    type=click.Path(exists=True, dir_okay=False),
    hidden=True,
    help="deprecated: --artifact work-seed=PATH",
)
@click.option(
    "--kernel-config",
    type=click.Path(exists=True, dir_okay=False),
    help="the kernel's .config (default: the rootfs's /boot/config-<version>, "
    "else the kernel's embedded IKCONFIG)",
)
def register(
    name: str,
    kernel: str,
    rootfs: str,
    initrd: str | None,
    artifacts: tuple[str, ...],
    work_seed: str | None,
    kernel_config: str | None,
) -> None:
    """Register an image made elsewhere (files are used in place).

    The kernel's capabilities are read and recorded; a kernel that no virtio
    transport can boot is refused.
    """
    import os

    extra: dict[str, str] = {}
    for item in artifacts:
        key, sep, path = item.partition("=")
        if not sep or not key or not path:
            raise click.BadParameter(f"{item!r} is not NAME=PATH", param_hint="--artifact")
        extra[key] = os.path.abspath(path)
    if work_seed:
        extra.setdefault("work-seed", os.path.abspath(work_seed))
    params = {
        "name": name,
        "kernel": os.path.abspath(kernel),
        "rootfs": os.path.abspath(rootfs),
        "initrd": os.path.abspath(initrd) if initrd else None,
        "artifacts": extra,
    }
    if kernel_config:
        params["kernel_config"] = os.path.abspath(kernel_config)
    result = rpc("image.register", params)
    click.echo(f"image {result['name']} registered ({result['id']})")
    fmt = result.get("kernel_format") or {}
    if fmt and not fmt.get("loads"):
        click.echo(
            f"note: the kernel is a {fmt.get('format')}; Firecracker {fmt.get('vmm_version')} "
            f"cannot load it: run `banger image convert-kernel {result['name']}`"
        )


@image.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def list_(as_json: bool) -> None:
    """List images."""
    images = rpc("image.list")
    if as_json:
        emit_json(images)
        return
    table(
        [
            (
                i["name"],
                i["id"],
                i["os"] or "-",
                "yes" if i["managed"] else "no",
                human_bytes(i["size"]),
                i["vms"],
            )
            for i in images
        ],
        ["NAME", "ID", "OS", "MANAGED", "SIZE", "VMS"],
    )


@image.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def show(ref: str, as_json: bool) -> None:
    """Show one image."""
    info = rpc("image.show", {"ref": ref})
    if as_json:
        emit_json(info)
        return
    for key in ("name", "id", "os", "kernel", "initrd", "rootfs", "fingerprint", "managed", "vms"):
        click.echo(f"{key + ':':<12} {info.get(key) if info.get(key) is not None else '-'}")
    for name, path in sorted((info.get("artifacts") or {}).items()):
        click.echo(f"{name + ':':<12} {path}")
    fmt = info.get("kernel_format") or {}
    if fmt:
        click.echo(f"{'kernel fmt:':<12} {format_line(fmt, info['name'])}")
    caps = info.get("kernel_caps") or {}
    if caps:
        click.echo("kernel capabilities:")
        for line in caps_lines(caps):
            click.echo(f"  {line}")


def format_line(fmt: dict, image: str) -> str:
    """``elf (Firecracker v1.16.1 loads it)``, or the bzImage's conversion hint."""
    if fmt.get("loads"):
        return f"{fmt.get('format')} (Firecracker {fmt.get('vmm_version')} loads it)"
    hint = f": run `banger image convert-kernel {image}`" if fmt.get("format") == "bzimage" else ""
    return f"{fmt.get('format')} (Firecracker {fmt.get('vmm_version')} cannot load it{hint})"


@image.command("convert-kernel")
@click.argument("ref")
def convert_kernel(ref: str) -> None:
    """Give an image the ELF vmlinux inside its bzImage kernel.

    Released Firecracker (up to v1.16.1) loads only an ELF vmlinux on
    x86_64. The vmlinux is decompressed from the bzImage (gzip, xz, lzma,
    bzip2, lz4 or zstd), checked with Firecracker's loader rules, and the
    image uses it from then on; the guest sees the same kernel.
    """
    result = rpc("image.convert_kernel", {"ref": ref})
    if not result.get("converted"):
        click.echo(f"image {result['name']}: kernel {result['kernel']} is already an ELF vmlinux")
        return
    click.echo(
        f"image {result['name']}: kernel {result['previous_kernel']} converted to "
        f"{result['kernel']} ({format_line(result['kernel_format'], result['name'])})"
    )


def caps_lines(caps: dict) -> list[str]:
    """``image show``/``doctor`` lines for a kernel-capabilities summary."""
    transports = caps.get("transports")
    shown = ", ".join(transports) if isinstance(transports, list) else str(transports)
    return [
        f"{'format:':<12} {caps.get('format')}"
        + (f" ({caps['version']})" if caps.get("version") else ""),
        f"{'config:':<12} {caps.get('config')}",
        f"{'transports:':<12} {shown or 'none'}",
        f"{'virtio_blk:':<12} {caps.get('virtio_blk')}",
        f"{'virtio_net:':<12} {caps.get('virtio_net')}",
        f"{'vsock:':<12} {caps.get('vsock')}",
        f"{'ip_pnp:':<12} {caps.get('ip_pnp')}",
    ]


@image.command()
@click.argument("ref")
def delete(ref: str) -> None:
    """Delete an image (refused while a VM uses it)."""
    result = rpc("image.delete", {"ref": ref})
    click.echo(f"image {result['name']} deleted")
