"""The machine description sent to the VMM at every boot."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

from banger_core.errors import ValidationError

_DRIVE_ID = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass
class Drive:
    """One virtio-blk drive."""

    drive_id: str
    path: str
    read_only: bool = False
    is_root: bool = False
    guest_device: str = ""


@dataclass
class NetworkInterface:
    """One virtio-net device fed by a host TAP."""

    iface_id: str
    tap: str
    mac: str


@dataclass
class Vsock:
    """The hybrid vsock device."""

    guest_cid: int
    uds_path: str


@dataclass
class MachineSpec:
    """Everything the VMM is configured with; rebuilt at every boot."""

    vcpus: int
    memory_mib: int
    kernel: str
    initrd: str | None = None
    boot_args: list[str] = field(default_factory=list)
    drives: list[Drive] = field(default_factory=list)
    nics: list[NetworkInterface] = field(default_factory=list)
    vsock: Vsock | None = None
    transport: str = "mmio"
    """``mmio`` or ``pci`` (the VMM is started with ``--enable-pci``)."""

    def use_transport(self, transport: str) -> None:
        """Put the virtio devices on ``transport``; PCI drops ``pci=off`` from the command line."""
        self.transport = transport
        if transport == "pci":
            self.boot_args = [a for a in self.boot_args if a != "pci=off"]

    def add_drive(
        self, drive_id: str, path: str, *, read_only: bool = False, is_root: bool = False
    ) -> str:
        """Attach a drive; return the device the guest will see it as (``/dev/vdb``).

        Firecracker keeps the root drive first (``vda``), then the others in
        the order they were added.
        """
        if not _DRIVE_ID.match(drive_id):
            raise ValidationError(
                f"drive id {drive_id!r} may contain only letters, digits and underscores"
            )
        if any(d.drive_id == drive_id for d in self.drives):
            raise ValidationError(f"drive id {drive_id!r} is already used")
        if is_root and any(d.is_root for d in self.drives):
            raise ValidationError("a root drive is already attached")
        drive = Drive(drive_id, path, read_only, is_root)
        self.drives.append(drive)
        self._assign_devices()
        return drive.guest_device

    def _assign_devices(self) -> None:
        ordered = [d for d in self.drives if d.is_root] + [d for d in self.drives if not d.is_root]
        letters = string.ascii_lowercase
        for index, drive in enumerate(ordered):
            drive.guest_device = f"/dev/vd{letters[index]}"

    def ordered_drives(self) -> list[Drive]:
        """Drives in the order the VMM sees them (root first)."""
        return [d for d in self.drives if d.is_root] + [d for d in self.drives if not d.is_root]

    def add_nic(self, tap: str, mac: str) -> None:
        """Attach a network interface on ``tap``."""
        self.nics.append(NetworkInterface(f"net{len(self.nics) + 1}", tap, mac))

    def boot_args_string(self) -> str:
        """The kernel command line."""
        return " ".join(self.boot_args)
