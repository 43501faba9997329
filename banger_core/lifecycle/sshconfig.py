"""OpenSSH configuration for VMs: ``banger vm ssh-config`` and the file the daemon keeps current."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

INCLUDED_NAME = "config"
"""The daemon rewrites ``<ssh dir>/config`` whenever a VM is created or deleted."""


PROXY_ENV = ("BANGER_STATE_DIR", "BANGER_CONFIG", "PYTHONPATH")
"""Variables the ``ProxyCommand`` keeps, so ``ssh NAME`` from any shell reaches the same
daemon (and the same banger) as the command that wrote the file."""


def proxy_command(name: str, env: Mapping[str, str] | None = None) -> str:
    """The ``ProxyCommand`` reaching VM ``name`` through the daemon.

    ``banger _fdpass`` asks the daemon for a socket connected to the VM's
    port 22 (the daemon connects from its namespace) and hands it to ssh
    (``ProxyUseFdpass``): no ``nsenter``, no root. The :data:`PROXY_ENV`
    variables set in ``env`` (default: this process's environment) are
    carried along with ``env``, since ssh runs it from whatever shell the
    user has.
    """
    source = os.environ if env is None else env
    kept = [f"{k}={source[k]}" for k in PROXY_ENV if source.get(k)]
    argv = [sys.executable, "-m", "banger_core.cli.main", "_fdpass", name]
    return shlex.join(["env", *kept, *argv] if kept else argv)


def host_block(vm: dict[str, Any], key: Path, netns: str) -> str:
    """One ``Host`` block: the VM's name, ``<name>.vm`` and its other DNS names.

    ``vm["identity"]``, when set, is the key file for this VM instead of ``key``
    (a member's copy of the VM's own key).
    """
    key = Path(vm.get("identity") or key)
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
