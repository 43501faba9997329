"""Named network namespaces (``ip netns``), for the simulated host and tests."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from banger_core import system
from banger_core.errors import ValidationError
from banger_core.system import Result

NETNS_DIR = Path("/run/netns")
HOST_NETNS_FD_ENV = "BANGER_HOST_NETNS_FD"


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


def host_network_runner(runner: system.Runner = system.run) -> system.Runner:
    """A runner whose commands use the machine's own network namespace.

    When bangerd runs in a namespace of its own (``[daemon] netns``), the
    namespace has no uplink; image builds still need the machine's apt
    sources. bangerd keeps a descriptor of the original namespace open
    (``$BANGER_HOST_NETNS_FD``) and commands are run through ``nsenter``.
    Without it, commands run as they are.
    """
    fd = os.environ.get(HOST_NETNS_FD_ENV)
    if not fd or not fd.isdigit():
        return runner
    ns_path = f"/proc/{os.getpid()}/fd/{fd}"

    def run_in_host_netns(argv: Sequence[str], **kwargs: Any) -> Result:
        return runner(["nsenter", f"--net={ns_path}", "--", *argv], **kwargs)

    return run_in_host_netns
