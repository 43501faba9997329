"""Both ends of the agent protocol: the real guest agent on a Unix socket, the plugin's client."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from banger_vsock import protocol as p
from banger_vsock.guest import agent
from pytest_banger import wait_until

AGENT_PY = Path(agent.__file__)


@pytest.fixture
def agent_sock(tmp_path: Path) -> Iterator[Path]:
    """The agent serving ``<tmp>/vsock/1024.sock`` with a 1 s request timeout."""
    vsock_dir = tmp_path / "vsock"
    vsock_dir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-I", str(AGENT_PY), "--port", "1024", "--request-timeout", "1"],
        env={"BANGER_VSOCK_DIR": str(vsock_dir), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    path = vsock_dir / "1024.sock"
    try:
        # bound is not yet listening: wait for accept
        wait_until(lambda: _accepts(path) or proc.poll() is not None, interval=0.02, what="accept")
        assert proc.poll() is None, "the agent exited"
        yield path
    finally:
        proc.kill()
        proc.wait(10)


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def connect(path: Path) -> p.AgentConnection:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    return p.AgentConnection(sock)


def run(path: Path, body: dict, stdin: bytes = b"") -> tuple[bytes, bytes, dict]:
    with connect(path) as conn:
        conn.open_stream("/exec", body)
        if stdin:
            conn.send(p.F_STDIN, stdin)
        conn.send(p.F_STDIN, b"")
        out, err = b"", b""
        while True:
            kind, payload = conn.recv()
            if kind == p.F_STDOUT:
                out += payload
            elif kind == p.F_STDERR:
                err += payload
            elif kind == p.F_EXIT:
                return out, err, p.exit_status(payload)


def test_exec_streams_and_exit_status(agent_sock: Path) -> None:
    out, err, info = run(agent_sock, {"argv": ["sh", "-c", "cat; echo e >&2; exit 5"]}, b"in\n")
    assert (out, err, info["exit_code"], info["signal"]) == (b"in\n", b"e\n", 5, None)
    _, _, info = run(agent_sock, {"argv": ["/no/such"]})
    assert info["exit_code"] == 127 and "program not found" in info["error"]
    _, _, info = run(agent_sock, {"argv": ["sh", "-c", "kill -TERM $$"]})
    assert info["signal"] == 15 and p.shell_exit_code(info) == 143


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"argv": []}, 400, "argv must be a non-empty list of strings"),
        ({"argv": ["true"], "env": {"A=B": "x"}}, 400, "env must map variable names"),
        ({"argv": ["true"], "cwd": "/no/such/dir"}, 404, "directory /no/such/dir does not exist"),
    ],
)
def test_exec_refuses_bad_requests_before_switching(agent_sock, body, status, message) -> None:
    with connect(agent_sock) as conn:
        resp = conn.request("POST", "/exec", body, upgrade=True)
        assert resp.status == status and message in resp.error_message()
        # the same connection still serves
        assert conn.get_json("/healthz")["status"] == "ok"
    with connect(agent_sock) as conn:
        resp = conn.request("POST", "/exec", {"argv": ["true"]})  # no Upgrade header
        assert resp.status == 426


def test_agent_keeps_serving_after_clients_vanish_mid_request(agent_sock: Path) -> None:
    for partial in (
        b"GET /heal",
        b'POST /exec HTTP/1.1\r\nContent-Length: 50\r\n\r\n{"ar',
        b"POST /exec HTTP/1.1\r\nUpgrade: banger-stream/1\r\nContent-Length: 18\r\n"
        b'\r\n{"argv": ["cat"]}\x00\x00',
    ):
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(str(agent_sock))
        raw.sendall(partial)
        raw.close()
        with connect(agent_sock) as conn:
            assert conn.get_json("/healthz")["status"] == "ok"


def test_stalled_client_is_dropped_while_others_are_served(agent_sock: Path) -> None:
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.settimeout(10)
    stalled.connect(str(agent_sock))
    stalled.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finish
    with connect(agent_sock) as conn:
        assert conn.get_json("/healthz")["status"] == "ok"
    started = time.monotonic()
    assert stalled.recv(100) == b""  # the agent's request timeout (1 s here) closed it
    assert time.monotonic() - started < 8
    stalled.close()


def test_vanished_exec_client_kills_the_program(agent_sock: Path) -> None:
    conn = connect(agent_sock)
    conn.open_stream("/exec", {"argv": ["sh", "-c", "echo $$; exec sleep 300"]})
    kind, payload = conn.recv()
    assert kind == p.F_STDOUT
    pid = int(payload)
    assert Path(f"/proc/{pid}").exists()
    conn.close()
    wait_until(
        lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid),
        what="the program to end with its client",
    )
    with connect(agent_sock) as again:
        assert again.get_json("/healthz")["status"] == "ok"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def _tar(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_files_put_refuses_escaping_names(agent_sock: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    with connect(agent_sock) as conn:
        conn.open_stream("/files/put", {"dest": str(dest)})
        conn.send(p.F_DATA, _tar([("../evil", b"x")]))
        conn.send(p.F_DATA, b"")  # the agent reads on after refusing: no broken pipe
        kind, payload = conn.recv()
    assert kind == p.F_EXIT and "refusing tar member '../evil'" in json.loads(payload)["error"]
    assert not (tmp_path / "evil").exists()


def test_files_put_and_get_round_trip(agent_sock: Path, tmp_path: Path) -> None:
    with connect(agent_sock) as conn:
        conn.open_stream("/files/put", {"dest": str(tmp_path / "renamed")})
        conn.send(p.F_DATA, _tar([("orig/a.txt", b"A"), ("orig/b/c.txt", b"C")]))
        conn.send(p.F_DATA, b"")
        kind, payload = conn.recv()
    assert kind == p.F_EXIT and json.loads(payload)["exit_code"] == 0
    assert (tmp_path / "renamed" / "b" / "c.txt").read_bytes() == b"C"
    with connect(agent_sock) as conn:
        resp = conn.open_stream("/files/get", {"path": str(tmp_path / "renamed")})
        assert resp.headers["x-banger-size"] == "2"
        data = b""
        while True:
            kind, payload = conn.recv()
            if kind == p.F_EXIT:
                break
            data += payload
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert sorted(tar.getnames()) == [
            "renamed",
            "renamed/a.txt",
            "renamed/b",
            "renamed/b/c.txt",
        ]
    with connect(agent_sock) as conn:
        resp = conn.request("POST", "/files/get", {"path": "/no/such"}, upgrade=True)
        assert resp.status == 404 and resp.error_message() == "/no/such does not exist in the guest"


def test_a_burst_of_connections_is_served(agent_sock: Path) -> None:
    conns = [connect(agent_sock) for _ in range(60)]  # all queued before any is served
    try:
        for conn in conns:
            conn.sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
        for conn in conns:
            resp = conn._read_response()
            assert resp.status == 200 and resp.json()["status"] == "ok"
    finally:
        for conn in conns:
            conn.close()


def test_exec_of_a_program_that_cannot_run_is_126_like_a_shell(
    agent_sock: Path, tmp_path: Path
) -> None:
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    for argv in ([str(script)], [str(tmp_path)]):  # not executable; a directory
        _, _, info = run(agent_sock, {"argv": argv})
        assert info["exit_code"] == 126, info
        assert "permission denied in the guest" in info["error"]
    _, _, info = run(agent_sock, {"argv": [str(tmp_path / "missing")]})
    assert info["exit_code"] == 127 and "program not found" in info["error"]


def test_a_failed_put_leaves_nothing_it_created(agent_sock: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "old.txt").write_text("old\n")
    with connect(agent_sock) as conn:
        conn.open_stream("/files/put", {"dest": str(dest)})
        conn.send(p.F_DATA, _tar([("top/a.txt", b"A"), ("top/sub/b.txt", b"B"), ("../evil", b"x")]))
        conn.send(p.F_DATA, b"")
        kind, payload = conn.recv()
    assert kind == p.F_EXIT and "refusing tar member '../evil'" in json.loads(payload)["error"]
    assert sorted(path.name for path in dest.iterdir()) == ["old.txt"]


def test_a_put_larger_than_the_guest_disk_is_removed_and_reported(tmp_path: Path) -> None:
    """The agent on a 1 MiB tmpfs (its own mount namespace): a 3 MiB copy fails cleanly."""
    import os
    import shutil

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare (a private tmpfs)")
    vsock_dir, small = tmp_path / "vsock", tmp_path / "small"
    vsock_dir.mkdir()
    small.mkdir()
    (small / "before.txt").write_text("kept\n")
    script = (
        f"mount -t tmpfs -o size=1m tmpfs {small} && echo kept > {small}/before.txt && "
        f'exec "{sys.executable}" -I {AGENT_PY} --port 1024'
    )
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        env={"BANGER_VSOCK_DIR": str(vsock_dir), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    path = vsock_dir / "1024.sock"
    try:
        wait_until(lambda: _accepts(path) or proc.poll() is not None, interval=0.02, what="accept")
        assert proc.poll() is None, "the agent exited"
        with connect(path) as conn:
            conn.open_stream("/files/put", {"dest": str(small)})
            conn.send(
                p.F_DATA, _tar([("big/first.bin", b"1" * 4096), ("big/huge.bin", b"x" * (3 << 20))])
            )
            conn.send(p.F_DATA, b"")
            kind, payload = conn.recv()
        error = json.loads(payload)["error"]
        assert kind == p.F_EXIT and error.startswith(f"writing {small}/big/huge.bin:"), error
        assert error.endswith(": no space left on the guest's disk; nothing of this copy was kept")
        listing = run(path, {"argv": ["ls", "-A", str(small)]})[0].decode().split()
        assert listing == ["before.txt"]
        used = run(path, {"argv": ["du", "-sk", str(small)]})[0].split()[0]
        assert int(used) < 64  # the partial 3 MiB file is gone, its space free again
    finally:
        proc.kill()
        proc.wait(10)
