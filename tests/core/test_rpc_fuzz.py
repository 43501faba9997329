"""Fuzzing a live daemon: random bytes and mutated requests never get an internal error.

A bounded random loop (seeded, so a failure can be replayed with
``BANGER_FUZZ_SEED``); ``BANGER_LONG_TESTS=1`` runs ten times as many.
"""

from __future__ import annotations

import json
import os
import random
import socket
from typing import Any

from banger_core.rpc import protocol

LONG = os.environ.get("BANGER_LONG_TESTS") == "1"
ROUNDS = 20000 if LONG else 2000
# Not fuzzed: stopping the daemon, and starting a real image build.
SKIP = {"daemon.stop", "image.build"}
FIELDS = [
    "ref",
    "name",
    "image",
    "cpus",
    "memory",
    "disk_size",
    "force",
    "signal",
    "log",
    "offset",
    "limit",
    "id",
    "kernel",
    "rootfs",
    "initrd",
    "work_seed",
    "os",
    "x",
    "",
]


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(12)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 2**64, 10**400, 7])
    if kind == 3:
        return rng.choice([0.5, -1e308, 1e308, float("nan")]) if rng.random() < 0.5 else 1.0
    if kind == 4:
        return rng.choice(
            [
                "",
                "abc",
                "8G",
                "-1",
                "1" + "0" * 400,
                "../../etc/shadow",
                "/etc/shadow",
                "\x00",
                "é" * 50,
                "x" * 5000,
                "SIGKILL",
                "vmm",
            ]
        )
    if kind == 5 and depth < 3:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 6 and depth < 3:
        return {rng.choice(FIELDS): _value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(12)))


def _request(rng: random.Random, methods: list[str], req_id: int) -> bytes:
    roll = rng.random()
    if roll < 0.1:
        return (
            bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))).replace(b"\n", b" ")
            + b"\n"
        )
    if roll < 0.15:
        return (
            rng.choice(
                [
                    b"[" * 100000,
                    b"{" * 3000,
                    b'{"method":',
                    b"null",
                    b"1e999999",
                    b'{"id":1}',
                    b'{"method":"vm.list","params":"x"}',
                ]
            )
            + b"\n"
        )
    params: Any = {rng.choice(FIELDS): _value(rng) for _ in range(rng.randrange(5))}
    if roll < 0.2:
        params = _value(rng)
    method = rng.choice(methods) if rng.random() < 0.9 else _value(rng)
    msg: dict[str, Any] = {"id": req_id, "method": method, "params": params}
    if rng.random() < 0.05:
        del msg["params"]
    line = json.dumps(msg, default=str).encode()
    if rng.random() < 0.1:  # byte-level mutation of a valid request
        pos = rng.randrange(len(line))
        line = line[:pos] + bytes([rng.randrange(256)]) + line[pos + 1 :]
    return line.replace(b"\n", b" ") + b"\n"


def _replies(sock: socket.socket, n: int, buf: bytearray) -> list[dict[str, Any]]:
    while buf.count(b"\n") < n:
        chunk = sock.recv(1 << 20)
        assert chunk, "the daemon closed the connection"
        buf += chunk
    out = []
    for _ in range(n):
        line, _, rest = bytes(buf).partition(b"\n")
        buf[:] = rest
        out.append(json.loads(line))
    return out


def test_fuzzed_requests_never_cause_internal_errors(banger_daemon) -> None:
    seed = int(os.environ.get("BANGER_FUZZ_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    methods = sorted(set(_methods(banger_daemon)) - SKIP)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(60)
    sock.connect(str(banger_daemon.socket))
    buf = bytearray()
    codes: dict[str, int] = {}
    for start in range(0, ROUNDS, 50):
        batch = [_request(rng, methods, start + i) for i in range(50)]
        sock.sendall(b"".join(batch))
        for req, reply in zip(batch, _replies(sock, len(batch), buf), strict=True):
            err = reply.get("error")
            if err:
                codes[err["code"]] = codes.get(err["code"], 0) + 1
                assert err["code"] != "internal", (seed, req[:300], err)
                if err["code"] == "plugin":  # a plugin method without a schema crashed:
                    assert "(from plugin" in err["message"], err  # named, with its plugin
                assert "internal error" not in err["message"], (seed, req[:300], err)
                assert "\n" not in err["message"]
    sock.close()
    assert banger_daemon.rpc("daemon.status")["pid"]
    assert codes.get("invalid", 0) > ROUNDS // 4, codes  # the fuzzer reached validation


def _methods(daemon) -> list[str]:
    """Every method the daemon serves, plugins' included; core ones all declare params."""
    listed = daemon.rpc("daemon.methods")
    missing = [m["name"] for m in listed if m["owner"] == "core" and m["params"] is None]
    assert missing == [], f"core methods without a declared schema: {missing}"
    return [m["name"] for m in listed]


def test_protocol_garbage_lines(banger_daemon) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(str(banger_daemon.socket))
    lines = [
        os.urandom(100).replace(b"\n", b"") + b"\n",
        b"[" * 100000 + b"\n",
        protocol.request(1, "vm.logs", {"ref": "x", "limit": "abc"}),
        protocol.request(2, "vm.logs", {"ref": "x", "offset": -1}),
        protocol.request(3, "vm.create", {"name": "ok", "memory": "1" + "0" * 400}),
    ]
    sock.sendall(b"".join(lines))
    replies = _replies(sock, len(lines), bytearray())
    for reply in replies:
        assert reply["error"]["code"] == "invalid", reply
    assert "limit" in replies[2]["error"]["message"]
    assert "offset" in replies[3]["error"]["message"]
    assert "too big" in replies[4]["error"]["message"]
    sock.close()
