#!/usr/bin/python3
"""banger-agent: the guest agent, a small HTTP/1.1 server inside the VM.

Installed into images as ``/usr/lib/banger/banger-agent``; standard library
only and standalone (copied into the image as is).

It listens on AF_VSOCK (any CID, port from ``--port`` or
``/run/banger/agent.json``, default 1024). When ``BANGER_VSOCK_DIR`` is set
(the Firecracker simulator) it listens instead on the Unix socket
``$BANGER_VSOCK_DIR/<port>.sock``, where the simulator forwards
``CONNECT <port>``.

It also serves the virtio-serial port ``banger.agent``
(``/dev/virtio-ports/banger.agent``) when the VM has one: ``banger-fcqemu``
bridges the hybrid-vsock socket to it where ``/dev/vhost-vsock`` is missing.
Connections are multiplexed over the port in frames (see
``banger_core/fcqemu/serialmux.py`` for the protocol, whose constants are
repeated here because this file is standalone).

Endpoints (JSON): ``GET /healthz`` and ``GET /ports``; anything else is a
JSON 404. See ``guest/README.md`` for the response shapes.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

AGENT_VERSION = 1
"""Version of the agent's HTTP API (bumped on incompatible changes)."""
DEFAULT_PORT = 1024
AGENT_CONFIG = "/run/banger/agent.json"
STARTED = time.monotonic()

# /proc/net/* socket states: TCP LISTEN, and an unconnected UDP socket.
TCP_LISTEN = "0A"
UDP_UNCONN = "07"


# --------------------------------------------------------------------------
# /ports


def decode_address(hex_addr: str) -> tuple[str, int]:
    """Decode ``/proc/net`` ``ADDR:PORT`` hex (host-endian words) to (ip, port)."""
    addr, _, port = hex_addr.partition(":")
    raw = bytes.fromhex(addr)
    # Each 32-bit word is stored in host byte order (little-endian on x86/arm).
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if sys.byteorder == "big":
        words = raw
    ip = ipaddress.ip_address(words)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip), int(port, 16)


def parse_proc_net(text: str, proto: str) -> list[dict[str, Any]]:
    """Parse one ``/proc/net/{tcp,tcp6,udp,udp6}`` table into listening sockets."""
    want = TCP_LISTEN if proto.startswith("tcp") else UDP_UNCONN
    sockets = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != want:
            continue
        try:
            address, port = decode_address(fields[1])
        except ValueError:
            continue
        sockets.append(
            {
                "proto": proto.rstrip("6"),
                "family": "ipv6" if proto.endswith("6") else "ipv4",
                "address": address,
                "port": port,
                "uid": int(fields[7]),
                "inode": int(fields[9]),
            }
        )
    return sockets


def socket_owners(proc: str = "/proc") -> dict[int, int]:
    """Map socket inode → lowest pid holding it, by scanning ``/proc/*/fd``."""
    owners: dict[int, int] = {}
    try:
        pids = sorted(int(p) for p in os.listdir(proc) if p.isdigit())
    except OSError:
        return owners
    for pid in pids:
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                owners.setdefault(int(target[8:-1]), pid)
    return owners


def process_info(pid: int, proc: str = "/proc") -> dict[str, Any]:
    """Return ``{"process": comm, "command": cmdline}`` for ``pid`` (best effort)."""
    info: dict[str, Any] = {"process": None, "command": None}
    with contextlib.suppress(OSError), open(f"{proc}/{pid}/comm") as f:
        info["process"] = f.read().strip()
    with contextlib.suppress(OSError):
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            args = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
        info["command"] = " ".join(args) or info["process"]
    return info


def listening_ports(proc: str = "/proc") -> list[dict[str, Any]]:
    """List listening TCP and bound UDP sockets with their owning process."""
    sockets: list[dict[str, Any]] = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open(f"{proc}/net/{proto}") as f:
                sockets.extend(parse_proc_net(f.read(), proto))
        except OSError:
            continue
    owners = socket_owners(proc)
    infos: dict[int, dict[str, Any]] = {}
    for sock in sockets:
        pid = owners.get(sock["inode"])
        sock["pid"] = pid
        if pid is not None and pid not in infos:
            infos[pid] = process_info(pid, proc)
        sock.update(infos.get(pid) or {"process": None, "command": None})
    sockets.sort(key=lambda s: (s["proto"], s["port"], s["family"], s["address"]))
    return sockets


# --------------------------------------------------------------------------
# HTTP


def healthz() -> dict[str, Any]:
    """The body of ``GET /healthz``."""
    return {
        "status": "ok",
        "agent_version": AGENT_VERSION,
        "hostname": socket.gethostname(),
        "uptime_seconds": round(_uptime(), 3),
    }


def _uptime() -> float:
    try:
        with open("/proc/uptime") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return time.monotonic() - STARTED


class Handler(BaseHTTPRequestHandler):
    """Serves the agent's JSON endpoints."""

    protocol_version = "HTTP/1.1"
    server_version = f"banger-agent/{AGENT_VERSION}"

    def do_GET(self) -> None:
        """Dispatch a GET request."""
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self.send_json(200, healthz())
        elif path == "/ports":
            self.send_json(200, {"agent_version": AGENT_VERSION, "ports": listening_ports()})
        else:
            self.send_json(404, {"error": "not_found", "path": path})

    def send_json(self, status: int, body: dict[str, Any]) -> None:
        """Send ``body`` as a JSON response with a Content-Length."""
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def address_string(self) -> str:
        """Client address for logs (Unix and vsock peers have no host name)."""
        return str(self.client_address or "peer")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the agent does not log each request."""


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Threaded HTTP server on a Unix socket (the simulator's vsock)."""

    daemon_threads = True


class VsockServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """Threaded HTTP server on AF_VSOCK."""

    daemon_threads = True
    allow_reuse_address = False
    address_family = getattr(socket, "AF_VSOCK", -1)


def make_server(port: int, vsock_dir: str | None = None) -> socketserver.BaseServer:
    """Create the listening server: Unix socket under ``vsock_dir`` or AF_VSOCK."""
    if vsock_dir:
        path = os.path.join(vsock_dir, f"{port}.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return UnixServer(path, Handler)
    if not hasattr(socket, "AF_VSOCK"):
        raise OSError("this Python has no AF_VSOCK")
    return VsockServer((socket.VMADDR_CID_ANY, port), Handler)


# --------------------------------------------------------------------------
# virtio-serial: connections multiplexed over one port (banger-fcqemu)

SERIAL_PORT_NAME = "banger.agent"
SERIAL_MAGIC = b"BGRM"
SERIAL_HEADER = struct.Struct(">4sBII")
SERIAL_MAX_PAYLOAD = 16384
SYNC, HELLO, OPEN, OPENED, REFUSED, DATA, EOF, CLOSE = range(1, 9)
SERIAL_WAIT_SECONDS = 120.0


def find_serial_port(
    name: str = SERIAL_PORT_NAME, dev: str = "/dev", sysfs: str = "/sys/class/virtio-ports"
) -> str | None:
    """The device of the virtio-serial port ``name``: udev's symlink, else found in sysfs."""
    link = os.path.join(dev, "virtio-ports", name)
    if os.path.exists(link):
        return link
    try:
        entries = sorted(os.listdir(sysfs))
    except OSError:
        return None
    for entry in entries:
        try:
            with open(os.path.join(sysfs, entry, "name")) as f:
                if f.read().strip() == name:
                    node = os.path.join(dev, entry)
                    return node if os.path.exists(node) else None
        except OSError:
            continue
    return None


class FrameReader:
    """Split the port's byte stream into frames, skipping garbage up to the next magic."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """Add ``data``; return complete frames as ``(type, channel, payload)``."""
        self.buffer += data
        frames = []
        while True:
            start = self.buffer.find(SERIAL_MAGIC)
            if start < 0:
                self.buffer = self.buffer[-(len(SERIAL_MAGIC) - 1) :]
                return frames
            self.buffer = self.buffer[start:]
            if len(self.buffer) < SERIAL_HEADER.size:
                return frames
            _magic, kind, channel, length = SERIAL_HEADER.unpack_from(self.buffer)
            if length > SERIAL_MAX_PAYLOAD or not SYNC <= kind <= CLOSE:
                self.buffer = self.buffer[1:]
                continue
            end = SERIAL_HEADER.size + length
            if len(self.buffer) < end:
                return frames
            frames.append((kind, channel, self.buffer[SERIAL_HEADER.size : end]))
            self.buffer = self.buffer[end:]


class SerialMux:
    """Serves the agent's HTTP API to connections multiplexed over a virtio-serial port.

    The host opens a channel per hybrid-vsock connection (``OPEN`` + port);
    each accepted channel gets a socket pair whose one end is handed to the
    HTTP handler, the other pumped to and from ``DATA`` frames.
    """

    def __init__(self, path: str, port: int) -> None:
        self.path = path
        self.port = port
        self.fd = -1
        self.write_lock = threading.Lock()
        self.lock = threading.Lock()
        self.channels: dict[int, socket.socket] = {}
        self.stopped = False

    def send(self, kind: int, channel: int = 0, payload: bytes = b"") -> None:
        """Write one frame (one write: the port takes up to 32 KiB atomically)."""
        frame = SERIAL_HEADER.pack(SERIAL_MAGIC, kind, channel, len(payload)) + payload
        with self.write_lock:
            view = memoryview(frame)
            while view:
                written = os.write(self.fd, view)
                view = view[written:]

    def serve_forever(self) -> None:
        """Open the port, announce the agent and serve channels until the port fails."""
        self.serve_fd(os.open(self.path, os.O_RDWR | os.O_CLOEXEC))

    def serve_fd(self, fd: int) -> None:
        """Serve on an open port (or any byte stream: tests pass a socket's fd)."""
        self.fd = fd
        self.send(HELLO)
        reader = FrameReader()
        while not self.stopped:
            try:
                data = os.read(self.fd, 65536)
                if not data:
                    time.sleep(0.2)  # the host side is not attached (yet): nothing to read
                    continue
                for kind, channel, payload in reader.feed(data):
                    self.on_frame(kind, channel, payload)
            except InterruptedError:
                continue
            except OSError:
                if self.stopped:
                    return
                raise

    def on_frame(self, kind: int, channel: int, payload: bytes) -> None:
        """Act on one frame from the host."""
        if kind == SYNC:
            # The host (re)attached: channels opened before are stale. Echo its nonce.
            self.reset()
            self.send(HELLO, 0, payload[:4])
            return
        if kind == OPEN:
            port = struct.unpack(">I", payload)[0] if len(payload) == 4 else -1
            if port != self.port:
                self.send(REFUSED, channel)
                return
            mine, theirs = socket.socketpair()
            with self.lock:
                old = self.channels.pop(channel, None)
                self.channels[channel] = mine
            if old is not None:
                old.close()
            threading.Thread(target=_serve_http, args=(theirs,), daemon=True).start()
            self.send(OPENED, channel)
            threading.Thread(target=self.pump, args=(channel, mine), daemon=True).start()
            return
        with self.lock:
            sock = self.channels.get(channel)
        if sock is None:
            if kind in (DATA, EOF):
                self.send(CLOSE, channel)
            return
        if kind == DATA:
            try:
                sock.sendall(payload)
            except OSError:
                self.drop(channel)
                self.send(CLOSE, channel)
        elif kind == EOF:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        elif kind == CLOSE:
            self.drop(channel)

    def pump(self, channel: int, sock: socket.socket) -> None:
        """Carry the handler's output to the host as DATA frames, then EOF."""
        while True:
            try:
                data = sock.recv(SERIAL_MAX_PAYLOAD)
            except OSError:
                break
            if not data:
                break
            try:
                self.send(DATA, channel, data)
            except OSError:
                break
        with self.lock:
            current = self.channels.get(channel)
        if current is sock:
            with contextlib.suppress(OSError):
                self.send(EOF, channel)
            self.drop(channel)

    def drop(self, channel: int) -> None:
        """Forget ``channel`` and close our end of it."""
        with self.lock:
            sock = self.channels.pop(channel, None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def reset(self) -> None:
        """Forget every channel (the host re-attached)."""
        with self.lock:
            ids = list(self.channels)
        for channel in ids:
            self.drop(channel)


def _serve_http(sock: socket.socket) -> None:
    try:
        Handler(sock, ("virtio-serial", 0), None)  # type: ignore[arg-type]
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def serve_serial(port: int, wait: float = SERIAL_WAIT_SECONDS) -> None:
    """Find the ``banger.agent`` port (loading virtio_console once if needed) and serve it.

    Returns when no port shows up within ``wait`` seconds (a VM without one).
    """
    deadline = time.monotonic() + wait
    loaded = False
    while True:
        path = find_serial_port()
        if path is not None:
            break
        if not loaded and not os.path.isdir("/sys/class/virtio-ports"):
            loaded = True
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(["modprobe", "-q", "virtio_console"], timeout=30, check=False)
            continue
        if time.monotonic() >= deadline:
            return
        time.sleep(1.0)
    print(f"banger-agent: serving {path} ({SERIAL_PORT_NAME})", flush=True)
    while True:
        try:
            SerialMux(path, port).serve_forever()
        except OSError as exc:
            print(f"banger-agent: {path}: {exc}; retrying", flush=True)
            time.sleep(1.0)


def configured_port(path: str = AGENT_CONFIG) -> int:
    """Port from the boot program's ``agent.json``, else the default."""
    try:
        with open(path) as f:
            return int(json.load(f).get("vsock_port") or DEFAULT_PORT)
    except (OSError, ValueError, AttributeError):
        return DEFAULT_PORT


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``banger-agent [--port N] [--config FILE]``."""
    parser = argparse.ArgumentParser(prog="banger-agent")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--config", default=AGENT_CONFIG)
    args = parser.parse_args(argv)
    port = args.port if args.port is not None else configured_port(args.config)
    vsock_dir = os.environ.get("BANGER_VSOCK_DIR") or None
    where = f"{vsock_dir}/{port}.sock" if vsock_dir else f"vsock port {port}"
    serial = None
    if not vsock_dir:
        # banger-fcqemu's bridge (no vhost-vsock on the host): a virtio-serial port.
        serial = threading.Thread(target=serve_serial, args=(port,), daemon=True)
        serial.start()
    try:
        server: socketserver.BaseServer | None = make_server(port, vsock_dir)
    except OSError as exc:
        if serial is None:
            raise
        print(f"banger-agent: no {where} ({exc}); serial port only", flush=True)
        server = None

    def _stop(_signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        if server is not None:
            print(f"banger-agent: listening on {where}", flush=True)
            server.serve_forever()
        elif serial is not None:
            serial.join()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        if server is not None:
            server.server_close()
        if vsock_dir:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(vsock_dir, f"{port}.sock"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
