"""What speaks on a TCP port: HTTPS first (so TLS services are not mislabelled), then HTTP."""

from __future__ import annotations

import socket
import ssl


def speaks_tls(ip: str, port: int, timeout: float) -> bool:
    """Whether a TLS handshake succeeds (certificates are not checked)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((ip, port), timeout=timeout) as sock,
            ctx.wrap_socket(sock) as tls,
        ):
            return tls.version() is not None
    except (OSError, ssl.SSLError, ValueError):
        return False


def speaks_http(ip: str, port: int, timeout: float, host: str = "") -> bool:
    """Whether the port answers a ``HEAD /`` with an HTTP status line."""
    try:
        with socket.create_connection((ip, port), timeout=timeout) as sock:
            sock.sendall(f"HEAD / HTTP/1.0\r\nHost: {host or ip}\r\n\r\n".encode())
            head = b""
            while len(head) < 5:
                data = sock.recv(16)
                if not data:
                    break
                head += data
            return head.startswith(b"HTTP/")
    except OSError:
        return False


def classify(ip: str, port: int, timeout: float, host: str = "") -> str:
    """``"https"``, ``"http"`` or ``"tcp"``."""
    if speaks_tls(ip, port, timeout):
        return "https"
    if speaks_http(ip, port, timeout, host):
        return "http"
    return "tcp"
