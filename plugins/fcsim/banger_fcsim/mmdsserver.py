"""MMDS served to the simulated guest, at the configured address, when a configured NIC exists.

Firecracker intercepts, in the virtio-net device of each interface named in
``PUT /mmds/config``, the guest's packets to the MMDS address (default
169.254.169.254) and answers HTTP itself. The simulator gives the guest's
network namespace that address (``/32`` on ``lo``) and serves
:func:`banger_vmmkit.mmds.respond` on port 80 from a socket made inside that
namespace, reading the VMM's live data store (``PUT``/``PATCH /mmds`` after
boot are seen at once). Difference: the guest reaches it whatever its
routes (Firecracker needs the packet to leave through a configured NIC).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import socket
import threading
from typing import Any

from banger_vmmkit import mmds

CLONE_NEWNET = 0x40000000
MAX_REQUEST = 64 * 1024
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class MmdsServer:
    """One listening socket in the guest's namespace, a thread per connection."""

    def __init__(self, netns: str, address: str, vmm: Any, log: Any) -> None:
        self.netns = netns
        self.address = address
        self.vmm = vmm
        self.log = log
        self.tokens = mmds.TokenAuthority()
        self.listener: socket.socket | None = None
        self.ready = threading.Event()
        self.error: str | None = None
        self.stopping = False

    def start(self) -> None:
        """Listen in the guest namespace (raises OSError when that fails)."""
        threading.Thread(target=self._serve, name="mmds", daemon=True).start()
        self.ready.wait(10)
        if self.error is not None:
            raise OSError(self.error)

    def _serve(self) -> None:
        try:
            fd = os.open(f"/run/netns/{self.netns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                # setns(2) moves only this thread: it stays in the guest namespace.
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.address, 80))
            listener.listen(16)
            self.listener = listener
        except OSError as exc:
            self.error = f"MMDS: cannot listen on {self.address}:80 in the guest: {exc}"
            self.ready.set()
            return
        self.ready.set()
        while not self.stopping:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.closing(conn):
            conn.settimeout(30)
            buf = b""
            while not self.stopping:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(4096)
                    if not chunk or len(buf) > MAX_REQUEST:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3:
                    conn.sendall(mmds.render(mmds.Reply(400, mmds.INVALID_URI)))
                    return
                headers = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                while len(buf) < length:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                buf = buf[length:]
                cfg = self.vmm.mmds_config or {}
                reply = mmds.respond(
                    parts[0],
                    parts[1],
                    headers,
                    data=self.vmm.mmds,
                    version=cfg.get("version") or "V1",
                    imds_compat=bool(cfg.get("imds_compat")),
                    tokens=self.tokens,
                )
                conn.sendall(mmds.render(reply))
                if headers.get("connection", "").lower() == "close":
                    return

    def stop(self) -> None:
        """Close the listener (the namespace goes with the guest)."""
        self.stopping = True
        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self.listener.close()
