"""Hybrid vsock over a virtio-serial port: banger-fcqemu's bridge against the real agent code.

A socket pair stands in for the port (QEMU's chardev on one side, the
guest's /dev/virtio-ports/banger.agent on the other).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from banger_fcqemu import serialmux
from banger_fcqemu.serialmux import FrameReader, SerialBridge, encode_frame
from banger_vsock.guest import agent
from pytest_banger.fcsim import http_get_over, vsock_connect

PORT = 1024


@dataclass
class Rig:
    uds: Path
    bridge: SerialBridge
    host_end: socket.socket
    guest_end: socket.socket
    muxes: list[agent.SerialMux]

    def start_agent(self) -> agent.SerialMux:
        mux = agent.SerialMux("unused", PORT)
        self.muxes.append(mux)
        threading.Thread(target=mux.serve_fd, args=(self.guest_end.fileno(),), daemon=True).start()
        return mux


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    uds = tmp_path / "v.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(uds))
    listener.listen(16)
    host_end, guest_end = socket.socketpair()
    bridge = SerialBridge(listener, lambda: host_end)
    bridge.start()
    rig = Rig(uds, bridge, host_end, guest_end, [])
    yield rig
    for mux in rig.muxes:
        mux.stopped = True
        mux.reset()
    bridge.stop()
    guest_end.close()
    listener.close()


def connect(uds: Path, port: int = PORT) -> tuple[socket.socket, bytes]:
    """Connect like a host program: ``CONNECT <port>``; return the socket and the answer line."""
    return vsock_connect(uds, port)


def http_get(s: socket.socket, path: str) -> tuple[int, dict]:
    status, body = http_get_over(s, path)
    return status, json.loads(body)


def test_healthz_through_the_bridge(rig: Rig) -> None:
    rig.start_agent()
    assert rig.bridge.ready.wait(10)
    s, line = connect(rig.uds)
    with s:
        assert line.startswith(b"OK ") and int(line.split()[1]) >= 1 << 30
        status, body = http_get(s, "/healthz")
    assert status == 200 and body["status"] == "ok" and body["agent_version"] == agent.AGENT_VERSION


def test_keep_alive_requests_and_concurrent_connections(rig: Rig) -> None:
    rig.start_agent()
    assert rig.bridge.ready.wait(10)
    a, line_a = connect(rig.uds)
    b, line_b = connect(rig.uds)
    with a, b:
        assert line_a.startswith(b"OK ") and line_b.startswith(b"OK ") and line_a != line_b
        for s in (a, b):  # HTTP/1.1 keep-alive: two requests on each, interleaved
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        for s in (a, b):
            reader = s.makefile("rb")
            assert reader.readline().startswith(b"HTTP/1.1 200")
            length = 0
            while (header := reader.readline()) != b"\r\n":
                if header.lower().startswith(b"content-length:"):
                    length = int(header.split(b":")[1])
            assert json.loads(reader.read(length))["status"] == "ok"
        status, body = http_get(b, "/nope")
        assert status == 404 and body["error"] == "not_found"


def test_port_nobody_serves_is_closed_without_ok(rig: Rig) -> None:
    rig.start_agent()
    assert rig.bridge.ready.wait(10)
    s, line = connect(rig.uds, port=5555)
    s.close()
    assert line == b""


def test_before_the_agent_is_up_connections_are_closed(rig: Rig) -> None:
    s, line = connect(rig.uds)
    s.close()
    assert line == b"" and not rig.bridge.ready.is_set()
    rig.start_agent()
    assert rig.bridge.ready.wait(10)
    s, line = connect(rig.uds)
    s.close()
    assert line.startswith(b"OK ")


def test_agent_restart_drops_open_channels(rig: Rig) -> None:
    first = rig.start_agent()
    assert rig.bridge.ready.wait(10)
    s, line = connect(rig.uds)
    with s:
        assert line.startswith(b"OK ")
        first.stopped = True
        first.send(agent.HELLO)  # what a restarted agent says first
        assert s.recv(1) == b""  # the bridge forgot the channel and closed it


def test_frame_reader_skips_garbage_and_waits_for_whole_frames() -> None:
    reader = FrameReader()
    frame = encode_frame(serialmux.DATA, 7, b"hello")
    assert reader.feed(b"xxBG" + frame[:5]) == []
    assert reader.feed(frame[5:]) == [(serialmux.DATA, 7, b"hello")]
    assert reader.skipped == 4
    bad_length = struct.pack(">4sBII", b"BGRM", serialmux.DATA, 1, 1 << 30)
    assert reader.feed(bad_length + encode_frame(serialmux.EOF, 2)) == [(serialmux.EOF, 2, b"")]
    guest = agent.FrameReader()
    assert guest.feed(b"zz" + frame + frame[:3]) == [(serialmux.DATA, 7, b"hello")]
    assert guest.feed(frame[3:]) == [(serialmux.DATA, 7, b"hello")]


def test_too_big_payload_is_refused() -> None:
    with pytest.raises(ValueError, match="over"):
        encode_frame(serialmux.DATA, 1, b"x" * (serialmux.MAX_PAYLOAD + 1))


def test_guest_and_host_agree_on_the_protocol() -> None:
    assert agent.SERIAL_MAGIC == serialmux.MAGIC
    assert agent.SERIAL_HEADER.format == serialmux.HEADER.format
    assert agent.SERIAL_MAX_PAYLOAD == serialmux.MAX_PAYLOAD
    names = ("SYNC", "HELLO", "OPEN", "OPENED", "REFUSED", "DATA", "EOF", "CLOSE")
    assert [getattr(agent, n) for n in names] == [getattr(serialmux, n) for n in names]
    from banger_fcqemu.cmdline import AGENT_PORT_NAME

    assert agent.SERIAL_PORT_NAME == AGENT_PORT_NAME


def test_find_serial_port(tmp_path: Path) -> None:
    dev, sysfs = tmp_path / "dev", tmp_path / "sys"
    (sysfs / "vport1p1").mkdir(parents=True)
    (sysfs / "vport1p1" / "name").write_text("banger.agent\n")
    dev.mkdir()
    assert agent.find_serial_port(dev=str(dev), sysfs=str(sysfs)) is None  # no node yet
    (dev / "vport1p1").write_text("")
    assert agent.find_serial_port(dev=str(dev), sysfs=str(sysfs)) == str(dev / "vport1p1")
    (dev / "virtio-ports").mkdir()
    (dev / "virtio-ports" / "banger.agent").write_text("")
    assert agent.find_serial_port(dev=str(dev), sysfs=str(sysfs)) == str(
        dev / "virtio-ports" / "banger.agent"
    )
