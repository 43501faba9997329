"""The RPC server under abuse: garbage, huge lines, floods, slow handlers, refused peers."""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
from pathlib import Path

import pytest

import banger_core.api  # noqa: F401  (imported by Daemon._plugin_handler)
from banger_core.daemon.app import Daemon
from banger_core.daemon.server import MAX_IN_FLIGHT, RPCServer
from banger_core.errors import DeniedError, ValidationError
from banger_core.rpc import protocol
from banger_core.rpc.client import RPCClient
from banger_core.rpc.schema import Field, rpc_params, schema_of
from tests.core.test_rpc_server import serving


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "s.sock"


def _raw(sock_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.connect(str(sock_path))
    return sock


def _lines(sock: socket.socket, n: int) -> list[dict]:
    buf = b""
    while buf.count(b"\n") < n:
        chunk = sock.recv(65536)
        assert chunk, f"closed before {n} replies"
        buf += chunk
    return [json.loads(line) for line in buf.split(b"\n")[:n]]


def test_garbage_gets_protocol_errors_and_the_connection_lives(sock_path: Path) -> None:
    server = RPCServer(sock_path)
    server.register("t.ping", lambda p, c: "pong")
    with serving(server):
        sock = _raw(sock_path)
        bad = [
            os.urandom(64).replace(b"\n", b"x"),
            b"[" * 100000,
            b"\xff\xfe{}",
            b"{" * 5000,
            b"null",
            b'{"method": 5}',
            b'{"method": "t.ping", "params": [1]}',
            b'"' + b"a" * 1000,
        ]
        sock.sendall(b"\n".join(bad) + b"\n" + protocol.request(1, "t.ping", {}))
        replies = _lines(sock, len(bad) + 1)
        for reply in replies[:-1]:
            assert reply["error"]["code"] == "invalid", reply
            assert "internal" not in reply["error"]["message"]
        assert replies[-1]["result"] == "pong"
        sock.close()


def test_too_large_request_is_answered_before_close(sock_path: Path) -> None:
    server = RPCServer(sock_path)
    server.register("t.ping", lambda p, c: "pong")
    with serving(server):
        sock = _raw(sock_path)
        big = b'{"method":"t.ping","params":{"x":"' + b"a" * (5 << 20) + b'"}}\n'
        sender = threading.Thread(target=lambda: _sendall_quietly(sock, big))
        sender.start()
        reply = _lines(sock, 1)[0]
        sender.join(20)
        assert reply["error"]["code"] == "invalid"
        assert "request too large" in reply["error"]["message"]
        assert str(protocol.MAX_LINE) in reply["error"]["message"]
        sock.close()


def _sendall_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass


def test_declared_schema_names_the_field(sock_path: Path) -> None:
    server = RPCServer(sock_path)

    @rpc_params(ref=Field.str(required=True), limit=Field.int(min=1, max=100, default=10))
    def logs(params, call):
        return params

    server.register("t.logs", logs)
    server.register("p.crash", lambda p, c: p["missing"], owner="plugin demo")
    with serving(server), RPCClient(sock_path, timeout=10) as client:
        assert client.call("t.logs", {"ref": "a"}) == {"ref": "a", "limit": 10}
        for params, word in (
            ({"ref": "a", "limit": "abc"}, "limit"),
            ({"ref": "a", "limit": -1}, "limit"),
            ({}, "ref"),
            ({"ref": "a", "bogus": 1}, "bogus"),
        ):
            with pytest.raises(ValidationError, match=word):
                client.call("t.logs", params)
        # A plugin method without a schema: a crash names the method and the plugin.
        with pytest.raises(Exception, match=r"p\.crash \(from plugin demo\) failed: KeyError"):
            client.call("p.crash", {})


def test_flooding_client_does_not_stall_others(sock_path: Path) -> None:
    """Issue 11: one connection writing 20,000 requests without reading stalled everyone."""
    server = RPCServer(sock_path)
    server.register(
        "t.list",
        lambda p, c: [{"name": f"vm{i}", "state": "running"} for i in range(20)],
        read=True,
    )
    with serving(server):
        flood = _raw(sock_path)
        flood.setblocking(False)
        # 20,000 requests of 1 KB each: far more than the server may buffer for us.
        payload = protocol.encode({"id": "x" * 960, "method": "t.list", "params": {}}) * 20000
        sent = 0
        deadline = time.monotonic() + 30
        # Write until the server stops reading us (our send buffer fills).
        while sent < len(payload) and time.monotonic() < deadline:
            _r, w, _x = select.select([], [flood], [], 0.5)
            if not w:
                break
            try:
                sent += flood.send(payload[sent : sent + 65536])
            except BlockingIOError:
                continue
        assert sent < len(payload), "the server read every request of a client not reading"
        for _ in range(20):
            with RPCClient(sock_path, timeout=10) as client:
                assert len(client.call("t.list")) == 20
        flood.close()
        with RPCClient(sock_path, timeout=10) as client:
            assert len(client.call("t.list")) == 20


def test_reads_never_wait_behind_blocked_calls(sock_path: Path) -> None:
    """Issue 11: seventy stops on a frozen VMM made `vm list` wait (one shared pool)."""
    server = RPCServer(sock_path)
    release = threading.Event()
    server.register("t.block", lambda p, c: release.wait(60))
    server.register("t.list", lambda p, c: "listed", read=True)
    with serving(server):
        socks = []
        for i in range(70):
            s = _raw(sock_path)
            s.sendall(protocol.request(i, "t.block", {}))
            socks.append(s)
        try:
            deadline = time.monotonic() + 10
            while server.executor._work_queue.qsize() == 0:  # the pool is saturated
                assert time.monotonic() < deadline
                time.sleep(0.01)
            with RPCClient(sock_path, timeout=10) as client:
                assert client.call("t.list") == "listed"
        finally:
            release.set()
            for s in socks:
                s.close()


def test_in_flight_requests_per_connection_are_bounded(sock_path: Path) -> None:
    server = RPCServer(sock_path)
    release = threading.Event()
    started = []
    server.register("t.block", lambda p, c: (started.append(1), release.wait(60)))
    with serving(server):
        sock = _raw(sock_path)
        sock.sendall(protocol.request(1, "t.block", {}) * (MAX_IN_FLIGHT * 3))
        deadline = time.monotonic() + 10
        while len(started) < MAX_IN_FLIGHT:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with RPCClient(sock_path, timeout=10) as _client:  # a full round trip elsewhere
            pass
        assert len(started) == MAX_IN_FLIGHT
        release.set()
        assert len(_lines(sock, MAX_IN_FLIGHT * 3)) == MAX_IN_FLIGHT * 3
        sock.close()


def test_refusal_reaches_a_client_that_writes_after_the_server_finished(
    sock_path: Path, monkeypatch
) -> None:
    """Issue 11: the server closed without reading; a client writing then got EPIPE."""
    server = RPCServer(sock_path)
    server.register("t.x", lambda p, c: 1)
    monkeypatch.setattr(server, "allowed", lambda uid, gid: False)
    with serving(server):
        sock = _raw(sock_path)
        # Force the bad ordering: read the refusal and the end of the server's
        # output first, only then write our request.
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        assert json.loads(data)["error"]["code"] == "denied"
        sock.sendall(protocol.request(1, "t.x", {}))  # EPIPE before the fix
        sock.close()
        with (
            pytest.raises(DeniedError, match="may not use bangerd"),
            RPCClient(sock_path, timeout=10) as client,
        ):
            client.call("t.x")


def test_client_reads_the_refusal_after_a_broken_pipe(tmp_path: Path) -> None:
    """The client side of the race: the peer answered and hung up before we wrote."""
    path = tmp_path / "fake.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    closed = threading.Event()

    def refuse() -> None:
        conn, _ = listener.accept()
        conn.sendall(protocol.error(None, "denied", "uid 1234 may not use bangerd"))
        conn.close()
        closed.set()

    thread = threading.Thread(target=refuse)
    thread.start()
    client = RPCClient(path, timeout=10).connect()
    assert closed.wait(10)
    thread.join(10)
    with pytest.raises(DeniedError, match="uid 1234 may not use bangerd"):
        for _ in range(3):  # the first write may still fit in the socket buffer
            client.call("t.x", {"pad": "x" * 300000})
    client.close()
    listener.close()


def test_plugin_handler_keeps_its_declared_schema() -> None:
    """The daemon wraps plugin handlers (PluginCall); the schema must survive the wrapping."""

    @rpc_params(ref=Field.str(required=True))
    def handler(params, call):
        return params

    wrapped = Daemon._plugin_handler(object.__new__(Daemon), "demo", handler)
    assert schema_of(wrapped) is schema_of(handler) is not None
