"""The vsock plugin's doctor check."""

from __future__ import annotations

import os
from typing import Any

from banger_core import Check

VHOST_VSOCK = "/dev/vhost-vsock"


def vhost_vsock_check(settings: Any, device: str = VHOST_VSOCK) -> Check:
    """Report ``/dev/vhost-vsock`` and what stands in for it where it is missing."""
    binary = os.path.basename(str(settings.get("firecracker", "binary")))
    simulated = "fcsim" in binary
    if os.path.exists(device):
        return Check(
            f"vsock device {device}",
            True,
            "present (guest vsock for the VMM; the agent channel uses "
            "Firecracker's hybrid vsock Unix socket per VM)",
        )
    if simulated:
        detail = (
            f"absent; the Firecracker simulator ({binary}) needs none: it serves each "
            "VM's vsock.sock itself (CONNECT <port> -> OK) and forwards to the "
            "guest agent's Unix socket"
        )
    else:
        detail = (
            f"absent; Firecracker's hybrid vsock needs only the VM's Unix socket, but "
            f"a VMM using vhost-vsock (QEMU) needs {device}"
        )
    return Check(
        f"vsock device {device}",
        simulated,
        detail,
        fix="modprobe vhost_vsock (kernel module vhost_vsock)",
        required=False,
    )
