"""Typed request bodies for the Firecracker API (see ``swagger/firecracker.yaml``).

Each dataclass turns into the JSON body Firecracker expects with
:meth:`to_json`; optional fields left at ``None`` are omitted, so the VMM
applies its own defaults exactly as it would for a hand-written request.

These are wire-level bodies, internal to the core. The one vocabulary for
describing a machine — what plugins see — is :class:`banger_core.MachineSpec`
with its :class:`banger_core.Drive` items (``banger_core.lifecycle.machine``);
``lifecycle.boot`` turns it into these requests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

VM_ID_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
"""Firecracker's ``--id`` rule."""

RESOURCE_ID_RE = re.compile(r"^[A-Za-z0-9_]+$")
"""Firecracker's rule for drive and interface IDs in URL paths (no hyphens)."""


def _body(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        out[f.name] = value
    return out


@dataclass(frozen=True)
class MachineConfig:
    """``PUT /machine-config``: vCPUs and memory (plus optional SMT/dirty tracking)."""

    vcpu_count: int
    mem_size_mib: int
    smt: bool | None = None
    track_dirty_pages: bool | None = None
    huge_pages: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the request body."""
        return _body(self)


@dataclass(frozen=True)
class BootSource:
    """``PUT /boot-source``: kernel, optional boot arguments and initrd."""

    kernel_image_path: str
    boot_args: str | None = None
    initrd_path: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the request body."""
        return _body(self)


@dataclass(frozen=True)
class Drive:
    """``PUT /drives/{drive_id}``: one virtio-block device."""

    drive_id: str
    path_on_host: str
    is_root_device: bool
    is_read_only: bool = False
    partuuid: str | None = None
    cache_type: str | None = None
    io_engine: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the request body."""
        return _body(self)


@dataclass(frozen=True)
class NetworkInterface:
    """``PUT /network-interfaces/{iface_id}``: one virtio-net device on a TAP."""

    iface_id: str
    host_dev_name: str
    guest_mac: str | None = None
    mtu: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the request body."""
        return _body(self)


@dataclass(frozen=True)
class Vsock:
    """``PUT /vsock``: the hybrid vsock device and its host Unix socket."""

    guest_cid: int
    uds_path: str

    def to_json(self) -> dict[str, Any]:
        """Return the request body."""
        return _body(self)


@dataclass(frozen=True)
class Logger:
    """``PUT /logger``: where and how Firecracker logs."""

    log_path: str | None = None
    level: str | None = None
    show_level: bool | None = None
    show_log_origin: bool | None = None
    module: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the request body."""
        return _body(self)


@dataclass(frozen=True)
class Metrics:
    """``PUT /metrics``: the metrics file (can be set once per process)."""

    metrics_path: str

    def to_json(self) -> dict[str, Any]:
        """Return the request body."""
        return _body(self)


@dataclass(frozen=True)
class Serial:
    """``PUT /serial``: send the guest console to a file instead of stdout."""

    serial_out_path: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the request body."""
        return _body(self)


@dataclass(frozen=True)
class InstanceInfo:
    """``GET /`` answer."""

    id: str
    state: str
    vmm_version: str
    app_name: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InstanceInfo:
        """Build from the JSON body."""
        return cls(
            id=str(data.get("id", "")),
            state=str(data.get("state", "")),
            vmm_version=str(data.get("vmm_version", "")),
            app_name=str(data.get("app_name", "")),
        )


def valid_vm_id(vm_id: str) -> bool:
    """Return True when ``vm_id`` satisfies Firecracker's ``--id`` rule."""
    return bool(VM_ID_RE.match(vm_id))


def valid_resource_id(resource_id: str) -> bool:
    """Return True when a drive / interface ID is accepted in an API path."""
    return bool(RESOURCE_ID_RE.match(resource_id))
