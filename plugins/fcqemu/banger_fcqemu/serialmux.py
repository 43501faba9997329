"""Hybrid vsock over a virtio-serial port: the host side of banger's port multiplexer.

Where ``/dev/vhost-vsock`` is missing, ``banger-fcqemu`` serves Firecracker's
hybrid-vsock Unix socket itself (``CONNECT <port>\\n`` → ``OK <host_port>\\n``,
then bytes) and carries each connection over one virtio-serial port
(``banger.agent``) that the guest agent also serves. A serial port is one
byte stream, so connections are multiplexed in frames::

    magic "BGRM" | type u8 | channel u32 | length u32 | payload (big-endian)

=========  ===========  ==========================================
type       direction    meaning
=========  ===========  ==========================================
SYNC       host→guest   "announce yourself" (sent when the host attaches; u32 nonce)
HELLO      guest→host   empty: the agent (re)started, forget every channel;
                        with the SYNC's nonce: the answer to that SYNC
OPEN       host→guest   open ``channel`` to guest port (payload: u32)
OPENED     guest→host   the port accepted
REFUSED    guest→host   nothing listens there (the host closes: an RST)
DATA       both         bytes of ``channel``
EOF        both         the sender sends no more on ``channel``
CLOSE      both         abort ``channel``
=========  ===========  ==========================================

The guest side is in ``plugins/vsock/banger_vsock/guest/agent.py`` (standalone, so it
carries its own copy of these constants; a test checks they agree).
Limits: no per-channel flow control (a client that stops reading stalls the
others), guest-initiated connections are not bridged, and only the ports the
agent serves answer.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from banger_vmmkit.vsock import HOST_PORT_BASE, read_connect_command

MAGIC = b"BGRM"
HEADER = struct.Struct(">4sBII")
MAX_PAYLOAD = 16384
SYNC, HELLO, OPEN, OPENED, REFUSED, DATA, EOF, CLOSE = range(1, 9)
OPEN_TIMEOUT = 10.0


def encode_frame(kind: int, channel: int = 0, payload: bytes = b"") -> bytes:
    """One frame (payload at most :data:`MAX_PAYLOAD` bytes)."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"frame payload of {len(payload)} bytes is over {MAX_PAYLOAD}")
    return HEADER.pack(MAGIC, kind, channel, len(payload)) + payload


class FrameReader:
    """Split a byte stream into frames, skipping garbage up to the next magic."""

    def __init__(self) -> None:
        self.buffer = b""
        self.skipped = 0

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """Add ``data``; return the complete frames as ``(type, channel, payload)``."""
        self.buffer += data
        frames: list[tuple[int, int, bytes]] = []
        while True:
            start = self.buffer.find(MAGIC)
            if start < 0:
                keep = len(MAGIC) - 1  # a magic may be split across reads
                self.skipped += max(0, len(self.buffer) - keep)
                self.buffer = self.buffer[-keep:] if len(self.buffer) > keep else self.buffer
                return frames
            if start:
                self.skipped += start
                self.buffer = self.buffer[start:]
            if len(self.buffer) < HEADER.size:
                return frames
            _magic, kind, channel, length = HEADER.unpack_from(self.buffer)
            if length > MAX_PAYLOAD or not SYNC <= kind <= CLOSE:
                self.skipped += 1
                self.buffer = self.buffer[1:]
                continue
            end = HEADER.size + length
            if len(self.buffer) < end:
                return frames
            frames.append((kind, channel, self.buffer[HEADER.size : end]))
            self.buffer = self.buffer[end:]


@dataclass
class Channel:
    """One bridged host connection."""

    conn: socket.socket
    answer: int | None = None
    answered: threading.Event = field(default_factory=threading.Event)
    sent_eof: bool = False
    got_eof: bool = False


class SerialBridge:
    """Serves the VMM's hybrid-vsock listener over the agent's virtio-serial port."""

    def __init__(
        self,
        listener: socket.socket,
        connect_port: Callable[[], socket.socket],
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.listener = listener
        self.connect_port = connect_port
        self.log = log or (lambda _m: None)
        self.port: socket.socket | None = None
        self.write_lock = threading.Lock()
        self.lock = threading.Lock()
        self.channels: dict[int, Channel] = {}
        self.ids = itertools.count(1)
        self.host_ports = itertools.count(HOST_PORT_BASE)
        self.ready = threading.Event()
        self.nonce = os.urandom(4)
        self.stopped = threading.Event()
        self.stop_r, self.stop_w = os.pipe()
        os.set_blocking(self.stop_r, False)
        os.set_blocking(self.stop_w, False)
        self.threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Attach to the port (in the background) and serve the listener."""
        for target, name in ((self._port_loop, "vsock-serial"), (self._accept_loop, "vsock-host")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        """Stop serving, close every bridged connection (the listener stays the VMM's)."""
        self.stopped.set()
        with contextlib.suppress(OSError):
            os.write(self.stop_w, b"x")
        self._reset_channels()
        port, self.port = self.port, None
        if port is not None:
            with contextlib.suppress(OSError):
                port.shutdown(socket.SHUT_RDWR)
            port.close()
        for thread in self.threads:
            thread.join(timeout=2)
        for fd in (self.stop_r, self.stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # ------------------------------------------------------------------ the serial side

    def send(self, kind: int, channel: int = 0, payload: bytes = b"") -> bool:
        """Write one frame to the port; False when it is gone."""
        port = self.port
        if port is None:
            return False
        try:
            with self.write_lock:
                port.sendall(encode_frame(kind, channel, payload))
        except OSError:
            return False
        return True

    def _port_loop(self) -> None:
        try:
            port = self.connect_port()
        except OSError as exc:
            self.log(f"vsock bridge: cannot attach to the agent's serial port: {exc}")
            return
        if self.stopped.is_set():
            port.close()
            return
        self.port = port
        self.send(SYNC, 0, self.nonce)
        reader = FrameReader()
        while not self.stopped.is_set():
            try:
                data = port.recv(65536)
            except OSError:
                break
            if not data:
                break
            for kind, channel, payload in reader.feed(data):
                self._on_frame(kind, channel, payload)
        self.ready.clear()
        self._reset_channels()

    def _on_frame(self, kind: int, channel: int, payload: bytes) -> None:
        if kind == HELLO:
            # The answer to our SYNC (sent before any OPEN) leaves channels alone: the
            # agent read the SYNC before their OPEN frames. An empty HELLO is a new agent.
            if payload != self.nonce:
                self._reset_channels()
            if not self.ready.is_set():
                self.log("vsock bridge: the guest agent is up on its serial port")
            self.ready.set()
            return
        with self.lock:
            ch = self.channels.get(channel)
        if ch is None:
            if kind in (DATA, EOF, OPENED):
                self.send(CLOSE, channel)
            return
        if kind in (OPENED, REFUSED):
            ch.answer = kind
            ch.answered.set()
        elif kind == DATA:
            try:
                ch.conn.sendall(payload)
            except OSError:
                self.send(CLOSE, channel)
                self._drop(channel)
        elif kind == EOF:
            ch.got_eof = True
            with contextlib.suppress(OSError):
                ch.conn.shutdown(socket.SHUT_WR)
            self._maybe_done(channel, ch)
        elif kind == CLOSE:
            ch.answered.set()
            self._drop(channel)

    def _drop(self, channel: int) -> None:
        with self.lock:
            ch = self.channels.pop(channel, None)
        if ch is not None:
            ch.answered.set()
            with contextlib.suppress(OSError):
                ch.conn.shutdown(socket.SHUT_RDWR)
            ch.conn.close()

    def _maybe_done(self, channel: int, ch: Channel) -> None:
        if ch.sent_eof and ch.got_eof:
            self._drop(channel)

    def _reset_channels(self) -> None:
        with self.lock:
            ids = list(self.channels)
        for channel in ids:
            self._drop(channel)

    # ------------------------------------------------------------------ the host side

    def _wait(self, sock: socket.socket) -> bool:
        while not self.stopped.is_set():
            try:
                watched: list[Any] = [sock, self.stop_r]
                ready, _, _ = select.select(watched, [], [], 1.0)
            except (OSError, ValueError):
                return False
            if self.stopped.is_set() or self.stop_r in ready:
                return False
            if sock in ready:
                return True
        return False

    def _accept_loop(self) -> None:
        while self._wait(self.listener):
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return
            threading.Thread(target=self._host_conn, args=(conn,), daemon=True).start()

    def _host_conn(self, conn: socket.socket) -> None:
        port = read_connect_command(conn, self._wait)
        if port is None or not self.ready.is_set():
            conn.close()  # no guest listener yet: what the guest's RST looks like
            return
        channel = next(self.ids)
        ch = Channel(conn)
        with self.lock:
            self.channels[channel] = ch
        if not self.send(OPEN, channel, struct.pack(">I", port)):
            self._drop(channel)
            return
        deadline = time.monotonic() + OPEN_TIMEOUT
        while not ch.answered.wait(0.5):
            if self.stopped.is_set() or time.monotonic() >= deadline:
                break
        if ch.answer != OPENED:
            if ch.answer is None:
                self.send(CLOSE, channel)
            self._drop(channel)
            return
        try:
            conn.sendall(f"OK {next(self.host_ports)}\n".encode())
        except OSError:
            self.send(CLOSE, channel)
            self._drop(channel)
            return
        self._pump_to_guest(channel, ch)

    def _pump_to_guest(self, channel: int, ch: Channel) -> None:
        while True:
            try:
                data = ch.conn.recv(MAX_PAYLOAD)
            except OSError:
                data = None
            if data is None:
                self.send(CLOSE, channel)
                self._drop(channel)
                return
            if not data:
                break
            if not self.send(DATA, channel, data):
                self._drop(channel)
                return
        ch.sent_eof = True
        self.send(EOF, channel)
        self._maybe_done(channel, ch)
