"""Opening a connection to a guest port through the VM's hybrid vsock socket.

Firecracker's (and the simulator's) host side: connect to the VM's Unix
socket, write ``CONNECT <port>\\n``, read ``OK <host port>\\n``; the socket
then carries the guest connection's bytes.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from banger_core import BangerError

OK_MAX = 32


def connect_port(uds_path: Path | str, port: int, timeout: float = 2.0) -> socket.socket:
    """A socket connected to guest vsock ``port``; :class:`BangerError` when nobody answers."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(uds_path))
        sock.sendall(f"CONNECT {port}\n".encode())
        line = b""
        while not line.endswith(b"\n") and len(line) < OK_MAX:
            byte = sock.recv(1)  # one byte at a time: never read past the OK line
            if not byte:
                break
            line += byte
    except FileNotFoundError:
        sock.close()
        raise BangerError(f"no vsock socket at {uds_path} (is the VM running?)") from None
    except OSError as exc:
        sock.close()
        raise BangerError(f"vsock {uds_path} port {port}: {exc.strerror or exc}") from None
    if not line.startswith(b"OK "):
        sock.close()
        raise BangerError(f"nothing listens on guest vsock port {port} (via {uds_path})")
    sock.settimeout(None)
    return sock


def wait_healthy(
    uds_path: Path | str, port: int, timeout: float, cancelled: object = None
) -> dict[str, Any]:
    """Poll ``GET /healthz`` until it answers ok; the health body, or :class:`BangerError`."""
    from banger_core import CancelledError
    from banger_vsock import replies
    from banger_vsock.protocol import AgentConnection

    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        if callable(cancelled) and cancelled():
            raise CancelledError("waiting for the guest agent cancelled")
        try:
            with AgentConnection(connect_port(uds_path, port, timeout=1.0)) as conn:
                conn.sock.settimeout(2.0)
                body: dict[str, Any] = replies.health(conn.get_json("/healthz"))
                if body["status"] == "ok":
                    return body
                last = f"status {body['status']!r}"
        except BangerError as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise BangerError(f"guest agent not healthy after {timeout:.0f}s ({last})")
        time.sleep(0.05)
