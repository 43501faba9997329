"""A tiny DNS client for the tests (UDP and TCP, plain sockets)."""

from __future__ import annotations

import socket
import struct

from dnslib import DNSRecord


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


def udp(host: str, port: int, data: bytes, timeout: float = 3.0) -> bytes | None:
    """Send one datagram; the reply, or None when nothing came back in time."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(data, (host, port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def tcp(host: str, port: int, data: bytes, timeout: float = 3.0) -> bytes:
    """One query over TCP (length-prefixed)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack("!H", len(data)) + data)
        head = _read(sock, 2)
        return _read(sock, struct.unpack("!H", head)[0])


def _read(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def ask(host: str, port: int, name: str, qtype: str = "A", *, over: str = "udp") -> DNSRecord:
    """Query ``name`` and parse the answer."""
    query = DNSRecord.question(name, qtype).pack()
    raw = udp(host, port, query) if over == "udp" else tcp(host, port, query)
    assert raw is not None, f"no answer for {name} {qtype} from {host}:{port}"
    return DNSRecord.parse(raw)
