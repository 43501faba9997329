"""OpenSSH configuration for VMs: ``banger vm ssh-config`` and the file the daemon keeps current."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

INCLUDED_NAME = "config"
"""The daemon rewrites ``<ssh dir>/config`` whenever a VM is created or deleted."""


def proxy_command(name: str) -> str:
    """The ``ProxyCommand`` reaching VM ``name`` when the daemon has a network namespace.

    ``banger _fdpass`` asks the daemon for a socket connected to the VM's
    port 22 (the daemon connects from its namespace) and hands it to ssh
    (``ProxyUseFdpass``): no ``nsenter``, no root.
    """
    return shlex.join([sys.executable, "-m", "banger_core.cli.main", "_fdpass", name])


def host_block(vm: dict[str, Any], key: Path, netns: str) -> str:
    """One ``Host`` block: the VM's name, ``<name>.vm`` and its other DNS names."""
    aliases = [vm["name"], f"{vm['name']}.vm"]
    for name in vm.get("dns_names") or []:
        if name not in aliases:
            aliases.append(name)
    lines = [
        f"# banger VM {vm['name']} (id {vm['id']})",
        f"Host {' '.join(aliases)}",
        f"    HostName {vm['ip']}",
        "    User root",
        f"    IdentityFile {key}",
        "    IdentitiesOnly yes",
        # Every VM makes its own host keys and may be re-created under the same name.
        "    StrictHostKeyChecking no",
        "    UserKnownHostsFile /dev/null",
        "    LogLevel ERROR",
    ]
    if netns:
        lines.append(f"    ProxyCommand {proxy_command(vm['name'])}")
        lines.append("    ProxyUseFdpass yes")
    return "\n".join(lines) + "\n"


def render(vms: Iterable[dict[str, Any]], key: Path, netns: str) -> str:
    """The whole file for ``vms``."""
    blocks = [host_block(vm, key, netns) for vm in vms]
    header = "# Written by banger (banger vm ssh-config); changes are overwritten.\n"
    return header + ("\n" + "\n".join(blocks) if blocks else "")


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (readable by all: it holds no secret)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    tmp.replace(path)
