#!/usr/bin/python3
"""banger-agent: the guest agent, a small HTTP/1.1 server inside the VM.

Installed into images as ``/usr/lib/banger/banger-agent``; standard library
only and standalone (copied into the image as is).

It listens on AF_VSOCK (any CID, port from ``--port`` or
``/run/banger/agent.json``, default 1024). When ``BANGER_VSOCK_DIR`` is set
(the Firecracker simulator) it listens instead on the Unix socket
``$BANGER_VSOCK_DIR/<port>.sock``, where the simulator forwards
``CONNECT <port>``.

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
import sys
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
    server = make_server(port, vsock_dir)
    where = f"{vsock_dir}/{port}.sock" if vsock_dir else f"vsock port {port}"

    def _stop(_signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    print(f"banger-agent: listening on {where}", flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
        if vsock_dir:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(vsock_dir, f"{port}.sock"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
