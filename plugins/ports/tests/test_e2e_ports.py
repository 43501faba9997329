"""vm ports through the CLI on the simulated host: http, https, tcp, udp and dual-stack rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from banger_core import system
from pytest_banger import wait_until

pytestmark = [pytest.mark.net, pytest.mark.slow]

TLS_SERVER = """
import http.server, ssl
httpd = http.server.HTTPServer(("0.0.0.0", 8443), http.server.SimpleHTTPRequestHandler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("/root/srv/cert.pem", "/root/srv/key.pem")
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
httpd.serve_forever()
"""

PLAIN_SERVER = """
import socket, threading
def serve(sock):
    while True:
        conn, _ = sock.accept()
        conn.sendall(b"hello\\n")
        conn.close()
v4 = socket.socket(socket.AF_INET); v4.bind(("0.0.0.0", 9000)); v4.listen()
v6 = socket.socket(socket.AF_INET6)
v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
v6.bind(("::", 9000)); v6.listen()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("0.0.0.0", 5555))
threading.Thread(target=serve, args=(v6,), daemon=True).start()
serve(v4)
"""


def start_servers(host, tmp_path: Path) -> None:
    srv = tmp_path / "srv"
    srv.mkdir()
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
            "/CN=p1.vm",
            "-keyout",
            str(srv / "key.pem"),
            "-out",
            str(srv / "cert.pem"),
        ]
    )
    (srv / "tls.py").write_text(TLS_SERVER)
    (srv / "plain.py").write_text(PLAIN_SERVER)
    host.cli("vm", "cp", str(srv), "p1:/root")
    for argv in (
        "python3 -m http.server 8000",
        "python3 /root/srv/tls.py",
        "python3 /root/srv/plain.py",
    ):
        host.cli(
            "vm", "exec", "p1", "--cwd", "/root/srv", "--", "sh", "-c", f"{argv} >/dev/null 2>&1 &"
        )


def test_ports_shows_web_endpoints_and_listeners(host, tmp_path):
    host.cli("vm", "create", "p1", "--cpus", "1", "--memory", "256")
    shown = host.json("vm", "show", "p1")
    # Endpoints use the VM's DNS name when a plugin publishes one (banger-dns), else its IP.
    dns_loaded = "dns" in [p["name"] for p in host.json("plugins") if p["status"] == "loaded"]
    assert shown["dns_names"] == (["p1.vm"] if dns_loaded else [])
    name = shown["dns_names"][0] if dns_loaded else shown["ip"]
    start_servers(host, tmp_path)

    def all_four() -> list[dict]:
        rows = json.loads(host.cli("vm", "ports", "p1", "--json").stdout)
        return rows if {8000, 8443, 9000, 5555} <= {r["port"] for r in rows} else []

    rows = wait_until(all_four, timeout=30, what="ports 8000, 8443, 9000 and 5555")
    by_endpoint = {r["endpoint"]: r for r in rows}
    assert by_endpoint[f"http://{name}:8000/"]["proto"] == "http"
    assert by_endpoint[f"http://{name}:8000/"]["command"] == "python3 -m http.server 8000"
    assert by_endpoint[f"https://{name}:8443/"]["proto"] == "https"
    assert by_endpoint[f"https://{name}:8443/"]["process"] == "python3"
    assert by_endpoint[f"{name}:22"]["proto"] == "tcp"
    assert by_endpoint[f"{name}:22"]["process"] == "sshd"
    assert by_endpoint[f"{name}:5555"]["proto"] == "udp"
    # 0.0.0.0:9000 and [::]:9000: one row
    plain = [r for r in rows if r["port"] == 9000]
    assert [(r["proto"], r["endpoint"]) for r in plain] == [("tcp", f"{name}:9000")]
    table = host.cli("vm", "ports", "p1").stdout.splitlines()
    assert table[0].split() == ["PROTO", "ENDPOINT", "PROCESS", "COMMAND"]
    assert any(line.split()[:3] == ["https", f"https://{name}:8443/", "python3"] for line in table)
    assert sum(f"{name}:9000" in line for line in table) == 1


def test_ports_of_a_stopped_vm_is_a_clear_error(host):
    host.cli("vm", "stop", "p1")
    result = host.cli("vm", "ports", "p1", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "banger: error: VM p1 is stopped; start it to see its ports"
