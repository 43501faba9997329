"""What Firecracker's kernel loader and the guest kernel would refuse (simulator rules).

At InstanceStart the stand-ins load the configured kernel with Firecracker's
loader, ported from linux-loader for the emulated version
(:mod:`banger_core.images.kernelload`), and read the kernel's capabilities
the way ``image register`` does (:mod:`banger_core.images.kernelcaps`:
IKCONFIG, else the root drive's ``/boot/config-<release>`` for the kernel's
own release; modules from the initrd and the root drive).
Each rule is listed, with the upstream source it follows, in
``docs/simulator.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from banger_core.firecracker.transport import mmio_problem, parse_version
from banger_core.images import kernelload
from banger_core.images.kernelcaps import KernelCaps, detect

if TYPE_CHECKING:
    from banger_vmmkit.api import Vmm

KERNEL_LOADER_ERROR = (
    "Start microvm error: System configuration error: Cannot load kernel due to invalid "
    "memory configuration or invalid kernel image: Kernel Loader: failed to load ELF "
    "kernel image: Kernel Loader: Invalid Elf magic number"
)
"""Firecracker v1.16.1's InstanceStart error for a kernel without ELF magic (a bzImage too)."""


@dataclass
class BootPlan:
    """What the guest kernel can do with this VMM configuration."""

    caps: KernelCaps
    transport: str
    """``mmio`` or ``pci`` (``--enable-pci``)."""
    discovery_problem: str | None
    """Why the guest cannot find its virtio devices (None: it can)."""

    @property
    def ip_pnp(self) -> bool:
        """Does the kernel apply ``ip=``? (unknown configuration: yes, as before)."""
        return self.caps.ip_pnp is not False

    @property
    def vsock(self) -> bool:
        """Can the guest use the vsock device?"""
        return self.caps.has("vsock")

    @property
    def net(self) -> bool:
        """Can the guest drive its NICs?"""
        return self.caps.has("virtio_net")


def _fd_path(fd: int | None) -> str | None:
    return None if fd is None else f"/proc/self/fd/{fd}"


def check_kernel_image(vmm: Vmm) -> kernelload.LoadedKernel | None:
    """Load the kernel as the emulated Firecracker would; raise its error when it refuses.

    The kernel is read through the descriptor opened at ``PUT /boot-source``
    (as Firecracker does), its segments must fit in ``mem_size_mib``.
    Returns what was loaded (format, entry, boot protocol), also kept on
    ``vmm.loaded_kernel``.
    """
    from banger_vmmkit.api import ApiError

    path = _fd_path(vmm.kernel_fd)
    if path is None:
        return None
    try:
        loaded = kernelload.load(
            path, version=vmm.opts.version, mem_size_mib=int(vmm.machine["mem_size_mib"])
        )
    except kernelload.KernelLoadError as exc:
        raise ApiError(str(exc)) from None
    vmm.loaded_kernel = loaded
    return loaded


def plan_boot(vmm: Vmm, version: str) -> BootPlan:
    """Read the kernel's capabilities and decide whether its devices can be found."""
    root = vmm.drives[0].path if vmm.drives and vmm.drives[0].is_root else None
    kernel = _fd_path(vmm.kernel_fd)
    assert kernel is not None
    caps = detect(kernel, initrd=_fd_path(vmm.initrd_fd), rootfs=root)
    transport = "pci" if vmm.opts.enable_pci else "mmio"
    if transport == "pci":
        problem = caps.transport_problem("pci")
    else:
        problem = mmio_problem(caps, parse_version(version))
    if problem is None and caps.known and vmm.drives:
        problem = caps.root_disk_problem()
    return BootPlan(caps, transport, problem)


def describe(plan: BootPlan) -> str:
    """One log line: what the simulator learnt about the guest kernel."""
    caps = plan.caps
    if not caps.known:
        return (
            f"Guest kernel: {caps.format} {caps.version or ''}; configuration unknown "
            "(no IKCONFIG, no /boot/config-* on the root drive): assuming it can do "
            "everything."
        )
    state = (
        "finds its devices"
        if plan.discovery_problem is None
        else f"cannot find its devices: {plan.discovery_problem}"
    )
    return (
        f"Guest kernel: {caps.format} {caps.version or ''} ({caps.config_source}); "
        f"{plan.transport} {state}; ip= {'applied' if plan.ip_pnp else 'ignored (no IP_PNP)'}"
        f"; vsock {'yes' if plan.vsock else 'no'}; virtio_net "
        f"{'yes' if plan.net else 'no'}."
    )


def stuck_console(plan: BootPlan, root_device: str, has_initrd: bool) -> str:
    """What the serial console shows when the guest cannot find its root disk.

    With an initrd (Debian's initramfs-tools) the boot waits for the root
    device, gives up and drops to a shell; without one the kernel panics.
    """
    reason = (
        f"banger-fcsim: the guest kernel cannot find its virtio devices: {plan.discovery_problem}\n"
    )
    if has_initrd:
        return reason + (
            "Gave up waiting for root file system device.  Common problems:\n"
            " - Boot args (cat /proc/cmdline)\n"
            "   - Check rootdelay= (did the system wait long enough?)\n"
            " - Missing modules (cat /proc/modules; ls /dev)\n"
            f"ALERT!  {root_device} does not exist.  Dropping to a shell!\n"
        )
    return reason + (
        f'VFS: Cannot open root device "{root_device.removeprefix("/dev/")}" or '
        "unknown-block(0,0): error -6\n"
        'Please append a correct "root=" boot option; here are the available partitions:\n'
        "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n"
    )
