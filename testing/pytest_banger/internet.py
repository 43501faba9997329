"""A fake internet for the simulated host: a namespace behind its uplink.

``FakeInternet`` makes a network namespace joined to the simulated host's
namespace by a veth pair (``bgup0`` on the host side, the host's default
route points through it) and runs, inside it, a small HTTP server and a
small DNS server on documentation addresses (RFC 5737):

- the host's uplink: 198.51.100.2/24, the internet's side 198.51.100.1
- HTTP on 203.0.113.10, ports 80 and 8080: answers ``client <address>``
- DNS on 203.0.113.53:53: A records from ``records`` (``www.example.test``)

The internet has no route back to the VMs' subnet, so only traffic the host
masquerades (NAT) gets answers. Both servers log every client to
``clients.log`` (``http 198.51.100.2`` / ``dns 198.51.100.2 www.example.test``).

Run as ``python -m pytest_banger.internet`` inside the namespace (the
class does this); it is test tooling, never used by banger itself.
"""

from __future__ import annotations

import argparse
import http.server
import os
import secrets
import signal
import socket
import socketserver
import struct
import sys
import threading
from pathlib import Path
from typing import Any

from banger_core import system
from banger_core.net.namespaces import delete_netns, ensure_netns

UPLINK = "bgup0"
HOST_ADDRESS = "198.51.100.2"
INTERNET_ADDRESS = "198.51.100.1"
PREFIXLEN = 24
HTTP_ADDRESS = "203.0.113.10"
HTTP_PORTS = (80, 8080)
DNS_ADDRESS = "203.0.113.53"
RECORDS = {"www.example.test": HTTP_ADDRESS}


class FakeInternet:
    """The internet namespace behind a host namespace; :meth:`close` removes all of it."""

    def __init__(
        self, host_netns: str, workdir: Path, records: dict[str, str] | None = None
    ) -> None:
        self.host_netns = host_netns
        self.netns = f"bgi-{secrets.token_hex(3)}"
        self.workdir = workdir
        self.records = dict(records or RECORDS)
        self.log = workdir / "clients.log"
        self.resolv_conf = workdir / "resolv.conf"
        self._proc: Any = None

    def _in(self, netns: str, *argv: str) -> None:
        system.run(["ip", "-n", netns, *argv])

    def start(self) -> FakeInternet:
        """Make the namespaces, the veth pair, the routes and start the servers."""
        ensure_netns(self.host_netns)
        ensure_netns(self.netns)
        peer = f"bgi{secrets.token_hex(3)}"
        system.run(
            [
                "ip",
                "-n",
                self.host_netns,
                "link",
                "add",
                UPLINK,
                "type",
                "veth",
                "peer",
                "name",
                peer,
                "netns",
                self.netns,
            ]
        )
        self._in(self.netns, "link", "set", peer, "name", "eth0")
        self._in(self.host_netns, "addr", "add", f"{HOST_ADDRESS}/{PREFIXLEN}", "dev", UPLINK)
        self._in(self.host_netns, "link", "set", UPLINK, "up")
        self._in(self.host_netns, "route", "add", "default", "via", INTERNET_ADDRESS)
        self._in(self.netns, "addr", "add", f"{INTERNET_ADDRESS}/{PREFIXLEN}", "dev", "eth0")
        for address in (HTTP_ADDRESS, DNS_ADDRESS):
            self._in(self.netns, "addr", "add", f"{address}/32", "dev", "lo")
        self._in(self.netns, "link", "set", "eth0", "up")
        self.resolv_conf.write_text(f"nameserver {DNS_ADDRESS}\n")
        self.log.write_text("")
        argv = [
            "ip",
            "netns",
            "exec",
            self.netns,
            sys.executable,
            "-m",
            "pytest_banger.internet",
            "--log",
            str(self.log),
        ]
        for name, address in self.records.items():
            argv += ["--record", f"{name}={address}"]
        read_end, write_end = os.pipe()
        try:
            self._proc = system.spawn(argv, stdout=write_end)
        finally:
            os.close(write_end)
        with os.fdopen(read_end, "rb") as ready:
            line = ready.readline().decode()  # "ready", or EOF when it died
        if not line.startswith("ready"):
            self.close()
            raise RuntimeError(f"fake internet did not start: {line!r}")
        return self

    def clients(self) -> list[str]:
        """Every line of ``clients.log`` (``http ADDRESS``, ``dns ADDRESS NAME``)."""
        try:
            return self.log.read_text().splitlines()
        except FileNotFoundError:
            return []

    def close(self) -> None:
        """Stop the servers (by PID) and delete the internet namespace."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except Exception:
                proc.kill()
                proc.wait(5)
        delete_netns(self.netns, runner=lambda argv, **kw: system.run(argv, check=False))


# -- the servers (run inside the internet namespace) -------------------------------------

_log_lock = threading.Lock()


def _note(log: Path, line: str) -> None:
    with _log_lock, log.open("a") as fh:
        fh.write(line + "\n")


def _http_server(address: str, port: int, log: Path) -> socketserver.BaseServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            client = self.client_address[0]
            _note(log, f"http {client}")
            body = f"client {client}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((address, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _dns_reply(data: bytes, records: dict[str, str]) -> tuple[bytes, str] | None:
    """A minimal authoritative answer: A records from ``records``, NXDOMAIN otherwise."""
    if len(data) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", data[:6])
    if qdcount != 1 or flags & 0x8000:
        return None
    labels, pos = [], 12
    while pos < len(data) and data[pos]:
        length = data[pos]
        labels.append(data[pos + 1 : pos + 1 + length].decode("ascii", "replace"))
        pos += 1 + length
    question = data[12 : pos + 5]
    if len(question) < pos + 5 - 12:
        return None
    qtype = struct.unpack("!H", data[pos + 1 : pos + 3])[0]
    name = ".".join(labels).lower()
    address = records.get(name)
    rd = flags & 0x0100
    if address is None:
        header = struct.pack("!HHHHHH", qid, 0x8483 | rd, 1, 0, 0, 0)
        return header + question, name
    if qtype != 1:
        return struct.pack("!HHHHHH", qid, 0x8480 | rd, 1, 0, 0, 0) + question, name
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(address)
    return struct.pack("!HHHHHH", qid, 0x8480 | rd, 1, 1, 0, 0) + question + answer, name


def _dns_server(address: str, records: dict[str, str], log: Path) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 53))

    def serve() -> None:
        while True:
            data, client = sock.recvfrom(4096)
            reply = _dns_reply(data, records)
            if reply is not None:
                _note(log, f"dns {client[0]} {reply[1]}")
                sock.sendto(reply[0], client)

    threading.Thread(target=serve, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """Serve HTTP and DNS until SIGTERM (inside the internet namespace)."""
    parser = argparse.ArgumentParser(description="banger's fake internet (tests only)")
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--record", action="append", default=[])
    args = parser.parse_args(argv)
    records = dict(r.split("=", 1) for r in args.record)
    for port in HTTP_PORTS:
        _http_server(HTTP_ADDRESS, port, args.log)
    _dns_server(DNS_ADDRESS, records, args.log)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    print("ready", flush=True)
    done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
