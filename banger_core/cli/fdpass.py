"""Reaching a VM's SSH port without root: the daemon connects, ssh gets the socket.

The daemon (which may live in a network namespace of its own) opens the TCP
connection to the guest and passes the connected socket over its RPC socket
(``vm.connect``, ``SCM_RIGHTS``). ``banger _fdpass VM`` hands that socket on
to ssh, which runs it as ``ProxyCommand`` with ``ProxyUseFdpass yes``. No
``nsenter``, so no root is needed.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import click

from banger_core.cli.context import connect


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
    from banger_core.lifecycle.sshconfig import proxy_command

    proxy = proxy_command(info["name"])
    return [
        "-i",
        str(readable_key(info)),
        "-o",
        f"ProxyCommand={proxy}",
        "-o",
        "ProxyUseFdpass=yes",
    ]


def readable_key(info: dict[str, Any]) -> Path:
    """The daemon's key path, or (for a socket_group member, who gets the text of the
    VM's own key) a copy in the member's private directory (:mod:`banger_core.cli.userdir`)."""
    from banger_core.cli.userdir import private_dir, write_private

    if not info.get("key_text"):
        return Path(info["key"])
    name = "".join(c for c in str(info.get("id") or info["name"]) if c.isalnum() or c in "-_")
    return write_private(private_dir() / f"vm-key-{name}", info["key_text"])
