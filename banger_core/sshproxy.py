"""``python -m banger_core.sshproxy HOST PORT``: relay stdin/stdout to a TCP connection.

The ``ProxyCommand`` of ``banger vm ssh-config`` when the daemon's VMs live
in a network namespace of their own: ``nsenter --net=... -- python -m
banger_core.sshproxy %h %p`` lets plain ``ssh``, ``scp``, ``rsync`` and
editors reach them. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading


def relay(host: str, port: int) -> int:
    """Copy stdin to the connection and the connection to stdout until both ends close."""
    try:
        sock = socket.create_connection((host, port), timeout=10)
    except OSError as exc:
        print(f"banger sshproxy: {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    sock.settimeout(None)

    def upstream() -> None:
        try:
            while data := os.read(0, 65536):
                sock.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, daemon=True).start()
    try:
        while data := sock.recv(65536):
            view = memoryview(data)
            while view:
                view = view[os.write(1, view):]
    except OSError:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not args[1].isdigit():
        print("usage: python -m banger_core.sshproxy HOST PORT", file=sys.stderr)
        return 2
    return relay(args[0], int(args[1]))


if __name__ == "__main__":
    sys.exit(main())
