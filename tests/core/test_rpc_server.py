"""The RPC server in-process: access control, cancellation on disconnect, registration."""

from __future__ import annotations

import asyncio
import grp
import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from banger_core.daemon.server import RPCCall, RPCServer
from banger_core.errors import ConflictError, NotFoundError, UnknownMethodError, ValidationError
from banger_core.rpc.client import RPCClient


@contextmanager
def serving(server: RPCServer, *, ready: bool = True) -> Iterator[asyncio.AbstractEventLoop]:
    """Run ``server`` on an event loop in a background thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(ready=ready), loop).result(10)
        yield loop
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "s.sock"


def send(sock_path: Path, payload: bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(sock_path))
    if payload:  # sending nothing to a server that already hung up would race into EPIPE
        sock.sendall(payload)
    return sock


def test_allowed_peers() -> None:
    server = RPCServer("/nonexistent")
    assert server.allowed(0, 0)
    assert server.allowed(os.geteuid(), 12345)
    stranger = 54321 if os.geteuid() != 54321 else 54322
    assert not server.allowed(stranger, 54321)


def test_allowed_with_group() -> None:
    group = grp.getgrgid(os.getegid())
    server = RPCServer("/nonexistent", group=group.gr_name)
    stranger = 54321 if os.geteuid() != 54321 else 54322
    assert server.allowed(stranger, group.gr_gid)
    assert not server.allowed(stranger, group.gr_gid + 1000)
    members = [g for g in grp.getgrall() if g.gr_mem]
    if members:
        import pwd

        member = members[0]
        try:
            uid = pwd.getpwnam(member.gr_mem[0]).pw_uid
        except KeyError:
            return
        server = RPCServer("/nonexistent", group=member.gr_name)
        assert server.allowed(uid, member.gr_gid + 1000)  # supplementary membership


def test_socket_modes(sock_path: Path) -> None:
    with serving(RPCServer(sock_path)):
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600
    assert not sock_path.exists()  # close() removes it
    group = grp.getgrgid(os.getegid())
    with serving(RPCServer(sock_path, group=group.gr_name)):
        st = os.stat(sock_path)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == group.gr_gid


def test_registration_rules() -> None:
    server = RPCServer("/nonexistent")
    server.register("vm.list", lambda p, c: [])
    with pytest.raises(ConflictError, match=r"'vm.list' from plugin x clashes with .* core"):
        server.register("vm.list", lambda p, c: [], owner="plugin x")
    with pytest.raises(ValidationError):
        server.register("nodot", lambda p, c: None)


def test_round_trip_errors_and_results(sock_path: Path) -> None:
    server = RPCServer(sock_path)

    def echo(params, call: RPCCall):
        return {"params": params, "method": call.method, "uid": call.peer_uid, "pid": call.peer_pid}

    async def aecho(params, call):
        return params["x"] * 2

    def missing(params, call):
        raise NotFoundError("no VM 'x'")

    def crash(params, call):
        raise KeyError("oops")

    for name, fn in {
        "t.echo": echo,
        "t.aecho": aecho,
        "t.missing": missing,
        "t.crash": crash,
    }.items():
        server.register(name, fn)
    with serving(server), RPCClient(sock_path, timeout=10) as client:
        result = client.call("t.echo", {"a": 1})
        assert result == {
            "params": {"a": 1},
            "method": "t.echo",
            "uid": os.geteuid(),
            "pid": os.getpid(),
        }
        assert client.call("t.aecho", {"x": 21}) == 42
        with pytest.raises(NotFoundError, match="no VM 'x'") as missing_vm:
            client.call("t.missing")
        assert not isinstance(missing_vm.value, UnknownMethodError)
        # a missing method is its own class (still a NotFoundError for old callers)
        with pytest.raises(UnknownMethodError, match=r"unknown method 't\.nope'"):
            client.call("t.nope")
        with pytest.raises(Exception, match=r"internal error in t\.crash: KeyError"):
            client.call("t.crash")
        assert client.call("t.aecho", {"x": 1}) == 2  # the connection still works


def test_client_disconnect_cancels_sync_handler(sock_path: Path) -> None:
    server = RPCServer(sock_path)
    started, cancelled = threading.Event(), threading.Event()

    def wait_forever(params, call: RPCCall):
        started.set()
        if call.cancelled.wait(10):
            cancelled.set()
        return "finished"

    server.register("t.wait", wait_forever)
    with serving(server):
        sock = send(sock_path, b'{"id": 1, "method": "t.wait", "params": {}}\n')
        assert started.wait(10)
        assert not cancelled.is_set()
        sock.close()
        assert cancelled.wait(5), "handler was not told that its client went away"


def test_client_disconnect_cancels_async_handler(sock_path: Path) -> None:
    server = RPCServer(sock_path)
    started, cancelled = threading.Event(), threading.Event()

    async def wait_forever(params, call):
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    server.register("t.wait", wait_forever)
    with serving(server):
        sock = send(sock_path, b'{"id": 1, "method": "t.wait"}\n')
        assert started.wait(10)
        sock.close()
        assert cancelled.wait(5)


def test_requests_wait_until_ready_except_early_methods(sock_path: Path) -> None:
    server = RPCServer(sock_path)
    server.register("t.early", lambda p, c: "early", early=True)
    server.register("t.late", lambda p, c: "late")
    with serving(server, ready=False):
        sock = send(sock_path, b'{"id": 1, "method": "t.late"}\n')
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(100)
        with RPCClient(sock_path, timeout=5) as client:
            assert client.call("t.early") == "early"
        server.mark_ready()
        sock.settimeout(5)
        assert json.loads(sock.recv(1000)) == {"id": 1, "result": "late"}
        sock.close()


def test_refused_peer_gets_an_error(sock_path: Path, monkeypatch) -> None:
    server = RPCServer(sock_path)
    server.register("t.x", lambda p, c: 1)
    monkeypatch.setattr(server, "allowed", lambda uid, gid: False)
    with serving(server):
        # The server answers and hangs up without reading: send nothing.
        sock = send(sock_path, b"")
        reply = json.loads(sock.makefile("rb").readline())
        sock.close()
    assert reply["error"]["code"] == "denied"
    assert f"uid {os.geteuid()} may not use bangerd" in reply["error"]["message"]


def test_handler_hands_the_client_a_file_descriptor(sock_path: Path) -> None:
    from banger_core import PassFd
    from banger_core.errors import DaemonError

    server = RPCServer(sock_path)
    before = len(os.listdir("/proc/self/fd"))

    def give(params, call):
        a, b = socket.socketpair()
        b.sendall(b"through the descriptor")
        b.close()
        return PassFd({"kind": "socket"}, a.detach())

    server.register("t.give", give)
    server.register("t.plain", lambda p, c: {"no": "fd"})
    with serving(server), RPCClient(sock_path, timeout=10) as client:
        for _ in range(3):  # several on one connection, between ordinary calls
            result, fd = client.call_with_fd("t.give")
            assert result == {"kind": "socket"}
            with socket.socket(fileno=fd) as sock:
                assert sock.recv(100) == b"through the descriptor"
            assert client.call("t.plain") == {"no": "fd"}
        with pytest.raises(DaemonError, match="without a file descriptor"):
            client.call_with_fd("t.plain")
        with pytest.raises(NotFoundError):
            client.call_with_fd("t.nope")
    # the server closed its copies: no descriptor leaked in this process
    assert len(os.listdir("/proc/self/fd")) <= before


def test_handler_calls_another_method(sock_path: Path) -> None:
    server = RPCServer(sock_path)
    server.register("t.inner", lambda p, c: {"inner": p["x"] + 1, "peer": c.peer_pid})

    async def ainner(params, call):
        return params["x"] * 10

    server.register("t.ainner", ainner)
    server.register(
        "t.outer", lambda p, c: [c.call("t.inner", {"x": 1}), c.call("t.ainner", {"x": 2})]
    )
    server.register("t.bad", lambda p, c: c.call("t.nope"))
    with serving(server), RPCClient(sock_path, timeout=10) as client:
        assert client.call("t.outer") == [{"inner": 2, "peer": os.getpid()}, 20]
        with pytest.raises(UnknownMethodError, match=r"unknown method 't\.nope'"):
            client.call("t.bad")
