"""Reaching a VM's SSH port without root: the daemon connects, ssh gets the socket.

The daemon (which may live in a network namespace of its own) opens the TCP
connection to the guest and passes the connected socket over its RPC socket
(``vm.connect``, ``SCM_RIGHTS``). ``banger _fdpass VM`` hands that socket on
to ssh, which runs it as ``ProxyCommand`` with ``ProxyUseFdpass yes``. No
``nsenter``, so no root is needed.
"""

from __future__ import annotations

import os
import shlex
import socket
import stat
import sys
from pathlib import Path
from typing import Any

import click

from banger_core.cli.context import connect
from banger_core.errors import BangerError


@click.command("_fdpass", hidden=True)
@click.argument("ref")
@click.option("--port", default=22, show_default=True, help="guest TCP port")
def fdpass(ref: str, port: int) -> None:
    """(ssh's ProxyCommand) Pass a socket connected to VM REF's PORT to ssh on stdout."""
    with connect() as client:
        _info, fd = client.call_with_fd("vm.connect", {"ref": ref, "port": port})
    out = socket.socket(fileno=os.dup(sys.stdout.fileno()))
    try:
        socket.send_fds(out, [b"\0"], [fd])
    finally:
        out.close()
        os.close(fd)


def ssh_options(info: dict[str, Any]) -> list[str]:
    """ssh options that reach the VM through ``banger _fdpass`` with a key we can read."""
    proxy = shlex.join([sys.executable, "-m", "banger_core.cli.main", "_fdpass", info["name"]])
    return [
        "-i",
        str(_readable_key(info)),
        "-o",
        f"ProxyCommand={proxy}",
        "-o",
        "ProxyUseFdpass=yes",
    ]


def _readable_key(info: dict[str, Any]) -> Path:
    """The daemon's key path, or (for a socket_group member) a private copy of it."""
    key = Path(info["key"])
    if os.access(key, os.R_OK) or not info.get("key_text"):
        return key
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime else Path.home() / ".cache"
    copy = base / "banger" / f"vm-key-{os.getuid()}"
    copy.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != 0o600:
            os.fchmod(fd, 0o600)
        os.write(fd, info["key_text"].encode())
    finally:
        os.close(fd)
    if copy.stat().st_uid != os.getuid():
        raise BangerError(f"{copy} is not yours; remove it and try again")
    return copy
