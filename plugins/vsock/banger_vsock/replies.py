"""Validating the agent's JSON replies: the guest is hostile, its answers are input.

``/healthz`` and ``/ports`` answers are reduced to the keys and types the
protocol documents (``docs/agent-protocol.md``), strings made printable and
bounded, lists capped; anything else is an :class:`~banger_vsock.protocol.AgentError`
(one line) rather than a crash or a lie passed on to the user.
"""

from __future__ import annotations

import ipaddress
import math
from typing import Any

from banger_vsock.protocol import AgentError, guest_text

MAX_PORTS = 4096
"""Listeners kept from one ``/ports`` answer (a guest could list millions)."""
MAX_FEATURES = 64
HOSTNAME_MAX = 253
COMMAND_MAX = 1024


def _text(value: Any, limit: int) -> str | None:
    return guest_text(value, limit) if isinstance(value, str) else None


def _int(value: Any, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def health(body: Any) -> dict[str, Any]:
    """A ``/healthz`` answer reduced to its documented shape."""
    if not isinstance(body, dict):
        raise AgentError("the agent's /healthz answer is not a JSON object")
    status = body.get("status")
    uptime = body.get("uptime_seconds")
    if (
        isinstance(uptime, bool)
        or not isinstance(uptime, (int, float))
        or not math.isfinite(uptime)
    ):
        uptime = None
    features = body.get("features")
    return {
        "status": _text(status, 32) or "missing",
        "agent_version": _int(body.get("agent_version"), 0, 1 << 31),
        "protocol": _text(body.get("protocol"), 64),
        "features": [guest_text(f, 64) for f in features[:MAX_FEATURES] if isinstance(f, str)]
        if isinstance(features, list)
        else [],
        "hostname": _text(body.get("hostname"), HOSTNAME_MAX),
        "uptime_seconds": None if uptime is None else max(0.0, float(uptime)),
    }


def _listener(row: Any) -> dict[str, Any] | None:
    if not isinstance(row, dict):
        return None
    proto = row.get("proto")
    port = _int(row.get("port"), 1, 65535)
    address = row.get("address")
    if proto not in ("tcp", "udp") or port is None or not isinstance(address, str):
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return {
        "proto": proto,
        "family": "ipv6" if ip.version == 6 else "ipv4",
        "address": str(ip),
        "port": port,
        "uid": _int(row.get("uid"), 0, (1 << 32) - 1),
        "inode": _int(row.get("inode"), 0, 1 << 63),
        "pid": _int(row.get("pid"), 1, 1 << 22),
        "process": _text(row.get("process"), 64),
        "command": _text(row.get("command"), COMMAND_MAX),
    }


def ports(body: Any) -> dict[str, Any]:
    """A ``/ports`` answer: well-formed listeners only, at most :data:`MAX_PORTS`."""
    if not isinstance(body, dict) or not isinstance(body.get("ports"), list):
        raise AgentError("the agent's /ports answer is not {'ports': [...]}")
    rows = [r for r in (_listener(row) for row in body["ports"][: MAX_PORTS * 4]) if r]
    return {"agent_version": _int(body.get("agent_version"), 0, 1 << 31), "ports": rows[:MAX_PORTS]}


VALIDATORS = {"/healthz": health, "/ports": ports}
