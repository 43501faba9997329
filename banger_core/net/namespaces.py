"""Named network namespaces (``ip netns``), for the simulated host and tests."""

from __future__ import annotations

import os
from pathlib import Path

from banger_core import system
from banger_core.errors import ValidationError

NETNS_DIR = Path("/run/netns")


def _check(name: str) -> None:
    if not name or "/" in name or len(name) > 64 or name.startswith("."):
        raise ValidationError(f"network namespace name {name!r} is not valid")


def exists(name: str) -> bool:
    """Whether ``/run/netns/<name>`` exists."""
    _check(name)
    return (NETNS_DIR / name).exists()


def in_netns(name: str) -> bool:
    """Whether this process already runs inside namespace ``name``."""
    try:
        return os.stat(NETNS_DIR / name).st_ino == os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return False


def ensure_netns(name: str, runner: system.Runner = system.run) -> None:
    """Create namespace ``name`` with loopback up, if it does not exist."""
    if exists(name):
        return
    runner(["ip", "netns", "add", name])
    runner(["ip", "-n", name, "link", "set", "lo", "up"])


def delete_netns(name: str, runner: system.Runner = system.run) -> None:
    """Delete namespace ``name`` (missing is fine)."""
    if exists(name):
        runner(["ip", "netns", "delete", name])
