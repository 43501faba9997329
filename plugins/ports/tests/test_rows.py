"""vm ports rows: naming, probing order, deduplication."""

from __future__ import annotations

import socket
import ssl
import threading

from banger_ports.enrich import rows
from banger_ports.probe import classify


def L(proto, address, port, family="ipv4", process="p", command="p --x"):
    return {
        "proto": proto,
        "address": address,
        "port": port,
        "family": family,
        "process": process,
        "command": command,
        "pid": 1,
    }


def test_rows_name_web_endpoints_and_dedupe() -> None:
    listeners = [
        L("tcp", "0.0.0.0", 8000),
        L("tcp", "::", 8000, "ipv6"),
        L("tcp", "10.0.0.5", 443),
        L("tcp", "10.0.0.5", 9000),
        L("tcp", "127.0.0.1", 5432),
        L("udp", "0.0.0.0", 53),
        L("udp", "::", 53, "ipv6"),
        L("tcp", "::1", 6000, "ipv6"),
    ]
    probed = []

    def probe(ip, port):
        probed.append((ip, port))
        return {8000: "http", 443: "https"}.get(port, "tcp")

    out = rows(listeners, "web.vm", "10.0.0.5", probe)
    assert [(r["proto"], r["endpoint"]) for r in out] == [
        ("udp", "web.vm:53"),
        ("https", "https://web.vm:443/"),
        ("tcp", "127.0.0.1:5432"),
        ("tcp", "[::1]:6000"),
        ("http", "http://web.vm:8000/"),
        ("tcp", "web.vm:9000"),
    ]
    assert sorted(probed) == [("10.0.0.5", 443), ("10.0.0.5", 8000), ("10.0.0.5", 9000)]
    assert [r["guest_only"] for r in out] == [False, False, True, True, False, False]
    # without DNS names the daemon passes the IP
    out = rows([L("tcp", "0.0.0.0", 8000)], "10.0.0.5", "10.0.0.5", probe)
    assert out[0]["endpoint"] == "http://10.0.0.5:8000/"


def _serve(handler) -> tuple[int, socket.socket]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def loop():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return listener.getsockname()[1], listener


def test_classify_tls_http_and_plain(tmp_path) -> None:
    from banger_core import system

    system.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=x",
            "-keyout",
            str(tmp_path / "k"),
            "-out",
            str(tmp_path / "c"),
        ]
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c", tmp_path / "k")

    def tls(conn):
        try:
            with ctx.wrap_socket(conn, server_side=True) as t:
                t.recv(100)
        except (OSError, ssl.SSLError):
            conn.close()

    def http(conn):
        with conn:
            conn.recv(100)
            conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n")

    def plain(conn):
        with conn:
            conn.sendall(b"hello\n")

    servers = [_serve(h) for h in (tls, http, plain)]
    try:
        assert [classify("127.0.0.1", port, 2.0) for port, _ in servers] == ["https", "http", "tcp"]
    finally:
        for _, sock in servers:
            sock.close()
