"""Tests of banger-agent: /proc/net parsing and the HTTP API on a Unix socket."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from banger_vsock.guest import agent
from pytest_banger import wait_until

AGENT_PY = Path(agent.__file__)

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid ...\n"
Z6 = "0" * 32
TCP = HEADER + "\n".join(
    [
        "   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 0 0 0 1234 1 0",
        "   1: 0100007F:A2D4 0100007F:0016 01 00000000:00000000 00:00000000 0 0 0 999 1 0",
        "   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 0 1000 0 4321 1 0",
    ]
)
TCP6 = HEADER + "\n".join(
    [
        f"   0: {Z6}:0016 {Z6}:0000 0A 00000000:00000000 00:00000000 0 0 0 55 1 0",
        f"   1: {'0' * 24}01000000:0035 {Z6}:0000 0A 00000000:00000000 00:00000000 0 0 0 56 1 0",
        f"   2: 0000000000000000FFFF00000100007F:0050 {Z6}:0000 0A 0:0 00:0 0 0 0 57 1 0",
    ]
)
UDP = HEADER + "\n".join(
    [
        "  100: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 0 101 0 777 2 0 0",
        "  101: 0100007F:0035 0200007F:0035 01 00000000:00000000 00:00000000 0 101 0 778 2 0 0",
    ]
)


def test_parse_proc_net_tcp() -> None:
    socks = agent.parse_proc_net(TCP, "tcp")
    assert [(s["address"], s["port"], s["inode"], s["uid"]) for s in socks] == [
        ("127.0.0.1", 22, 1234, 0),
        ("0.0.0.0", 8080, 4321, 1000),
    ]
    assert all(s["proto"] == "tcp" and s["family"] == "ipv4" for s in socks)


def test_parse_proc_net_tcp6() -> None:
    socks = agent.parse_proc_net(TCP6, "tcp6")
    assert [(s["address"], s["port"], s["family"]) for s in socks] == [
        ("::", 22, "ipv6"),
        ("::1", 53, "ipv6"),
        ("127.0.0.1", 80, "ipv6"),
    ]


def test_parse_proc_net_udp() -> None:
    socks = agent.parse_proc_net(UDP, "udp")
    assert [(s["proto"], s["address"], s["port"]) for s in socks] == [("udp", "127.0.0.53", 53)]


def _connection(path: str) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("agent", timeout=10)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    conn.sock = sock
    return conn


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, dict]:
    conn.request("GET", path)
    resp = conn.getresponse()
    assert resp.getheader("Content-Type") == "application/json"
    return resp.status, json.loads(resp.read())


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


@pytest.fixture
def running_agent(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, Path]]:
    vsock_dir = tmp_path / "vsock"
    vsock_dir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-I", str(AGENT_PY), "--port", "1234"],
        env={"BANGER_VSOCK_DIR": str(vsock_dir), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sock_path = vsock_dir / "1234.sock"
    try:
        # bound comes before listening: wait for accept
        wait_until(
            lambda: _accepts(sock_path) or proc.poll() is not None,
            interval=0.02,
            what="the agent to listen on its socket",
        )
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        yield proc, sock_path
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def test_agent_http_api(running_agent: tuple[subprocess.Popen, Path]) -> None:
    _proc, sock_path = running_agent
    conn = _connection(str(sock_path))
    try:
        status, body = _get(conn, "/healthz")
        assert status == 200
        assert body["status"] == "ok"
        assert body["agent_version"] == agent.AGENT_VERSION
        assert body["hostname"] == socket.gethostname()
        assert body["uptime_seconds"] >= 0
        # keep-alive: more requests on the same connection
        status, body = _get(conn, "/nope")
        assert status == 404
        assert body == {"error": "not_found", "path": "/nope"}
    finally:
        conn.close()


def test_agent_ports_lists_listener_with_owner(
    running_agent: tuple[subprocess.Popen, Path],
) -> None:
    _proc, sock_path = running_agent
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    conn = _connection(str(sock_path))
    try:
        status, body = _get(conn, "/ports")
    finally:
        conn.close()
        listener.close()
    assert status == 200
    assert body["agent_version"] == agent.AGENT_VERSION
    mine = [p for p in body["ports"] if p["port"] == port and p["proto"] == "tcp"]
    assert len(mine) == 1, body
    entry = mine[0]
    assert entry["address"] == "127.0.0.1"
    assert entry["family"] == "ipv4"
    assert entry["pid"] == os.getpid()
    assert entry["process"] == Path("/proc/self/comm").read_text().strip()
    assert entry["command"] == " ".join(
        a.decode() for a in Path("/proc/self/cmdline").read_bytes().split(b"\0") if a
    )


def test_agent_stops_on_sigterm(running_agent: tuple[subprocess.Popen, Path]) -> None:
    proc, sock_path = running_agent
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert not sock_path.exists()
    out = proc.stdout.read() if proc.stdout else ""
    assert f"listening on {sock_path}" in out


def test_configured_port(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.json"
    assert agent.configured_port(str(cfg)) == agent.DEFAULT_PORT
    cfg.write_text('{"vsock_port": 4096}')
    assert agent.configured_port(str(cfg)) == 4096
    cfg.write_text("garbage")
    assert agent.configured_port(str(cfg)) == agent.DEFAULT_PORT


DROPIN_GOOD = """
def setup(agent):
    def identity(body):
        if "hostname" not in body:
            raise agent.RequestError(400, "hostname missing")
        return {"hostname": body["hostname"], "applied": True}

    def echo(request, body):
        frames = request.switch()
        kind, payload = agent.read_frame(request.rfile)
        frames.send(agent.F_STDOUT, payload.upper())
        frames.exit(0)

    agent.register("POST", "/identity", identity, feature="identity")
    agent.register("GET", "/identity", lambda body: {"hostname": "g"}, feature="identity")
    agent.register("POST", "/echo", echo, feature="echo", streaming=True)
"""
DROPIN_HIJACK = """
def setup(agent):
    agent.register("POST", "/exec", lambda body: {}, feature="evil")
"""
DROPIN_BROKEN = "raise RuntimeError('broken on purpose')\n"


def _post(conn: http.client.HTTPConnection, path: str, body: dict, **headers: str):
    data = json.dumps(body).encode()
    conn.request("POST", path, body=data, headers={"Content-Type": "application/json", **headers})
    return conn.getresponse()


def test_dropins_add_operations_and_features(tmp_path: Path) -> None:
    dropins = tmp_path / "agent.d"
    dropins.mkdir()
    (dropins / "10-identity.py").write_text(DROPIN_GOOD)
    (dropins / "20-hijack.py").write_text(DROPIN_HIJACK)
    (dropins / "30-broken.py").write_text(DROPIN_BROKEN)
    vsock_dir = tmp_path / "vsock"
    vsock_dir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-I", str(AGENT_PY), "--port", "1235", "--dropin-dir", str(dropins)],
        env={"BANGER_VSOCK_DIR": str(vsock_dir), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sock_path = vsock_dir / "1235.sock"
    try:
        wait_until(
            lambda: _accepts(sock_path) or proc.poll() is not None,
            interval=0.02,
            what="the agent to listen on its socket",
        )
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        conn = _connection(str(sock_path))
        status, body = _get(conn, "/healthz")
        assert status == 200
        assert body["features"] == ["healthz", "ports", "exec", "files", "echo", "identity"]
        assert _get(conn, "/identity") == (200, {"hostname": "g"})
        resp = _post(conn, "/identity", {"hostname": "restored"})
        assert (resp.status, json.loads(resp.read())) == (
            200,
            {"hostname": "restored", "applied": True},
        )
        resp = _post(conn, "/identity", {})
        assert (resp.status, json.loads(resp.read())) == (400, {"error": "hostname missing"})
        resp = _post(conn, "/echo", {})  # streaming needs the upgrade, like /exec
        assert resp.status == 426
        resp.read()
        conn.close()
        # A streaming operation, spoken the way the host speaks /exec.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(sock_path))
            s.sendall(
                b"POST /echo HTTP/1.1\r\nHost: agent\r\nContent-Length: 2\r\n"
                b"Upgrade: banger-stream/1\r\nConnection: Upgrade\r\n\r\n{}"
            )
            rfile = s.makefile("rb")
            assert rfile.readline().startswith(b"HTTP/1.1 101")
            while rfile.readline() not in (b"\r\n", b""):
                pass
            s.sendall(agent.FRAME_HEADER.pack(agent.F_STDIN, 5) + b"hello")
            assert agent.read_frame(rfile) == (agent.F_STDOUT, b"HELLO")
            kind, payload = agent.read_frame(rfile)
            assert kind == agent.F_EXIT and json.loads(payload)["exit_code"] == 0
        # The built-in /exec still is the agent's own; the broken drop-in was skipped.
        conn = _connection(str(sock_path))
        resp = _post(conn, "/exec", {"argv": ["true"]})
        assert resp.status == 426  # the real /exec, which needs the upgrade
        resp.read()
        conn.close()
    finally:
        proc.kill()
        proc.wait(10)
    out = proc.stdout.read() if proc.stdout else ""
    if proc.stdout:
        proc.stdout.close()
    assert f"drop-in {dropins}/10-identity.py loaded" in out
    assert (
        f"drop-in {dropins}/20-hijack.py not loaded: ValueError: POST /exec is already served"
        in out
    )
    assert f"drop-in {dropins}/30-broken.py not loaded: RuntimeError: broken on purpose" in out
