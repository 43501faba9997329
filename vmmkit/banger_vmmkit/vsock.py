"""The simulated hybrid vsock device (Firecracker's ``VsockMuxer`` protocol).

Host-initiated: the host connects to ``uds_path`` (bound at ``PUT /vsock``)
and writes ``CONNECT <port>\\n`` in one write. Once the guest "booted", the
muxer accepts, reads the command exactly as Firecracker does (case-insensitive,
up to 32 bytes, dropped if incomplete), and connects to the guest listener
``<vsock_dir>/<port>.sock``. On success it answers ``OK <host_port>\\n``
(round-robin from ``1 << 30``) and splices bytes; if nothing listens it closes
without an answer (the guest's RST).

Guest-initiated: a guest program connects to ``<vsock_dir>/host.sock`` and
writes ``<port>\\n``; the muxer connects to ``<uds_path>_<port>`` and splices
raw bytes (closing at once when nothing listens there).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
from collections.abc import Callable

HOST_PORT_BASE = 1 << 30
MAX_CONNECTIONS = 1023
CMD_MAX = 32


def splice(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until both directions hit EOF; then close both."""

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=pump, args=(b, a), daemon=True)
    t.start()
    pump(a, b)
    t.join()
    a.close()
    b.close()


def read_connect_command(conn: socket.socket, wait: Callable[[socket.socket], bool]) -> int | None:
    """Read ``CONNECT <port>\\n`` as Firecracker's ``read_local_stream_port``; None = drop.

    ``wait(conn)`` blocks until ``conn`` is readable (False: give up). The
    command must arrive in one piece (case-insensitive, at most 32 bytes).
    """
    conn.settimeout(None)
    if not wait(conn):
        return None
    try:
        peek = conn.recv(CMD_MAX, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:
        return None
    nl = peek.find(b"\n")
    if nl < 0:
        return None  # split command or too long: Firecracker drops the connection
    line = conn.recv(nl + 1)
    words = line.decode("ascii", "replace").split()
    if len(words) != 2 or words[0].lower() != "connect":
        return None
    try:
        port = int(words[1])
    except ValueError:
        return None
    if not 0 <= port < (1 << 32) or not words[1].isdigit():
        return None
    return port


class VsockMuxer:
    """Serves the host-side vsock socket and the guest's ``host.sock``."""

    def __init__(
        self,
        listener: socket.socket,
        uds_path: str,
        vsock_dir: str,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.listener = listener
        self.uds_path = uds_path
        self.vsock_dir = vsock_dir
        self.log = log or (lambda _m: None)
        self.next_port = HOST_PORT_BASE
        self.port_lock = threading.Lock()
        self.active = 0
        self.accepting = threading.Event()
        self.stopped = threading.Event()
        self.stop_r, self.stop_w = os.pipe()
        # Both accept loops select on stop_r and drain it when woken; it must
        # not block, or the loop that loses the race hangs in read() forever.
        os.set_blocking(self.stop_r, False)
        os.set_blocking(self.stop_w, False)
        self.guest_listener: socket.socket | None = None
        self.threads: list[threading.Thread] = []

    def bind_guest_side(self) -> None:
        """Listen on ``<vsock_dir>/host.sock`` for guest-initiated connections."""
        path = os.path.join(self.vsock_dir, "host.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, 0o666)
        sock.listen(128)
        self.guest_listener = sock

    def start(self) -> None:
        """Start the accept threads (host connections wait for :meth:`activate`)."""
        for target, name in ((self._host_loop, "vsock-host"), (self._guest_loop, "vsock-guest")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self.threads.append(t)

    def activate(self) -> None:
        """The guest driver is up: start accepting host connections."""
        self.accepting.set()
        with contextlib.suppress(OSError):
            os.write(self.stop_w, b"a")

    def pause(self) -> None:
        """Stop accepting (paused VM)."""
        self.accepting.clear()

    def stop(self) -> None:
        """Stop the threads; the listener socket is closed by the VMM."""
        self.stopped.set()
        self.accepting.set()
        with contextlib.suppress(OSError):
            os.write(self.stop_w, b"x")
        for t in self.threads:
            t.join(timeout=2)
        if self.guest_listener is not None:
            self.guest_listener.close()
        for fd in (self.stop_r, self.stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _wait(self, sock: socket.socket) -> bool:
        while not self.stopped.is_set():
            try:
                ready, _, _ = select.select([sock.fileno(), self.stop_r], [], [], 1.0)
            except (OSError, ValueError):
                return False
            if self.stopped.is_set():
                return False
            if self.stop_r in ready:
                # Woken by activate(): drain and look again (stop() leaves the byte for others).
                with contextlib.suppress(OSError):
                    os.read(self.stop_r, 64)
                continue
            if sock.fileno() in ready:
                return True
        return False

    def _host_loop(self) -> None:
        while not self.stopped.is_set():
            if not self.accepting.is_set():
                self.accepting.wait(1.0)
                continue
            if not self._wait(self.listener):
                return
            if not self.accepting.is_set():
                continue
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return
            if self.active >= MAX_CONNECTIONS:
                conn.close()
                continue
            threading.Thread(target=self._host_conn, args=(conn,), daemon=True).start()

    def _read_command(self, conn: socket.socket) -> int | None:
        """Read ``CONNECT <port>\\n`` like ``read_local_stream_port``; None = drop."""
        return read_connect_command(conn, self._wait)

    def _host_conn(self, conn: socket.socket) -> None:
        self.active += 1
        try:
            port = self._read_command(conn)
            if port is None:
                conn.close()
                return
            guest = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            guest.settimeout(2.0)
            try:
                guest.connect(os.path.join(self.vsock_dir, f"{port}.sock"))
            except OSError:
                guest.close()
                conn.close()  # the guest answered RST
                return
            guest.settimeout(None)
            with self.port_lock:
                host_port = self.next_port
                self.next_port += 1
                if self.next_port >= 1 << 32:
                    self.next_port = HOST_PORT_BASE
            try:
                conn.sendall(f"OK {host_port}\n".encode())
            except OSError:
                guest.close()
                conn.close()
                return
            splice(conn, guest)
        finally:
            self.active -= 1

    def _guest_loop(self) -> None:
        if self.guest_listener is None:
            return
        while not self.stopped.is_set():
            if not self._wait(self.guest_listener):
                return
            try:
                conn, _ = self.guest_listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._guest_conn, args=(conn,), daemon=True).start()

    def _guest_conn(self, conn: socket.socket) -> None:
        conn.settimeout(5.0)
        line = b""
        try:
            while not line.endswith(b"\n") and len(line) < CMD_MAX:
                byte = conn.recv(1)
                if not byte:
                    break
                line += byte
        except OSError:
            conn.close()
            return
        try:
            port = int(line.strip())
        except ValueError:
            conn.close()
            return
        host = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            host.connect(f"{self.uds_path}_{port}")
        except OSError:
            host.close()
            conn.close()
            return
        conn.settimeout(None)
        splice(host, conn)
