"""Firecracker API client and VMM process management.

Used the same way for the real ``firecracker`` binary and for
``banger-fcsim``; only the binary path differs.
"""

from banger_core.firecracker.client import (
    FirecrackerAPIError,
    FirecrackerClient,
    FirecrackerConnectionError,
)
from banger_core.firecracker.launcher import (
    VMMProcess,
    VMMStartError,
    find_vmm_pid,
    launch_vmm,
    pid_alive,
    remove_stale_socket,
    wait_for_exit,
)
from banger_core.firecracker.models import (
    BootSource,
    Drive,
    InstanceInfo,
    Logger,
    MachineConfig,
    Metrics,
    NetworkInterface,
    Vsock,
    valid_resource_id,
    valid_vm_id,
)

__all__ = [
    "BootSource",
    "Drive",
    "FirecrackerAPIError",
    "FirecrackerClient",
    "FirecrackerConnectionError",
    "InstanceInfo",
    "Logger",
    "MachineConfig",
    "Metrics",
    "NetworkInterface",
    "VMMProcess",
    "VMMStartError",
    "Vsock",
    "find_vmm_pid",
    "launch_vmm",
    "pid_alive",
    "remove_stale_socket",
    "valid_resource_id",
    "valid_vm_id",
    "wait_for_exit",
]
