"""The simulated virtio-net device: a veth into the guest namespace and a frame pump.

The TAP (opened at PUT time like Firecracker) is pumped both ways against an
``AF_PACKET`` socket bound to the host end of a veth pair whose other end is
the guest's ``ethN``. Lessons from PROBES.md are applied: TX checksum offload
is off on both ends, frames the packet socket reports as ``PACKET_OUTGOING``
are skipped, and ENETDOWN while a link comes up is treated as transient.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import selectors
import socket
import threading
from dataclasses import dataclass

from banger_core import system

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
MAX_FRAME = 65536
TRANSIENT = {errno.ENETDOWN, errno.EAGAIN, errno.ENOBUFS, errno.EIO, errno.ENXIO, errno.EMSGSIZE}


def ip(*args: str, netns: str | None = None) -> None:
    """Run ``ip [-n NS] args`` (raises CommandError on failure)."""
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    system.run(argv, timeout=15)


def tx_offload_off(dev: str, netns: str | None = None) -> None:
    """``ethtool -K dev tx off`` (in ``netns`` when given)."""
    argv = ["ethtool", "-K", dev, "tx", "off"]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    system.run(argv, check=False, timeout=15)


@dataclass
class IpConfig:
    """A parsed kernel ``ip=`` argument (static form)."""

    client: str
    gateway: str | None
    prefixlen: int
    hostname: str | None
    device: str | None


def parse_ip_arg(cmdline: str) -> IpConfig | None:
    """Parse ``ip=<client>:<server>:<gw>:<netmask>:<hostname>:<dev>:<autoconf>`` from a cmdline."""
    value = None
    for word in cmdline.split():
        if word.startswith("ip="):
            value = word[3:]
    if not value or value in ("off", "none", "dhcp", "on", "any", "bootp", "rarp", "both"):
        return None
    parts = value.split(":")
    parts += [""] * (7 - len(parts))
    client, _server, gw, mask, host, dev = parts[:6]
    if not client:
        return None
    prefix = 24
    if mask:
        try:
            prefix = ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
        except ValueError:
            prefix = 24
    else:
        with contextlib.suppress(ValueError):
            first = int(client.split(".")[0])
            prefix = 8 if first < 128 else 16 if first < 192 else 24
    return IpConfig(client, gw or None, prefix, host or None, dev or None)


class FramePump:
    """Moves Ethernet frames between a TAP fd and a packet socket on a veth."""

    def __init__(self, tap_fd: int, host_if: str) -> None:
        self.tap_fd = tap_fd
        self.host_if = host_if
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((host_if, ETH_P_ALL))
        self.sock.setblocking(False)
        self.running = threading.Event()
        self.running.set()
        self.stop_r, self.stop_w = os.pipe()
        self.thread = threading.Thread(target=self._loop, name=f"pump-{host_if}", daemon=True)
        self.stopped = False

    def start(self) -> None:
        """Start pumping."""
        os.set_blocking(self.tap_fd, False)
        # Drop frames queued on the TAP before the guest existed (a real NIC would not see them).
        with contextlib.suppress(OSError):
            while os.read(self.tap_fd, MAX_FRAME):
                pass
        self.thread.start()

    def pause(self) -> None:
        """Stop moving frames (a paused VM does not process its queues)."""
        self.running.clear()

    def resume(self) -> None:
        """Move frames again."""
        self.running.set()
        with contextlib.suppress(OSError):
            os.write(self.stop_w, b"r")

    def stop(self) -> None:
        """Stop the thread and close the packet socket (the TAP fd belongs to the VMM)."""
        if self.stopped:
            return
        self.stopped = True
        self.running.set()
        with contextlib.suppress(OSError):
            os.write(self.stop_w, b"x")
        if self.thread.is_alive():
            self.thread.join(timeout=2)
        self.sock.close()
        for fd in (self.stop_r, self.stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.tap_fd, selectors.EVENT_READ, "tap")
        sel.register(self.sock, selectors.EVENT_READ, "pkt")
        sel.register(self.stop_r, selectors.EVENT_READ, "stop")
        try:
            while not self.stopped:
                if not self.running.is_set():
                    self.running.wait(0.5)
                    continue
                for key, _ in sel.select(timeout=1.0):
                    if key.data == "stop":
                        with contextlib.suppress(OSError):
                            os.read(self.stop_r, 64)
                    elif key.data == "tap":
                        self._tap_to_veth()
                    else:
                        self._veth_to_tap()
        except (OSError, ValueError):
            if not self.stopped:
                raise
        finally:
            sel.close()

    def _tap_to_veth(self) -> None:
        for _ in range(64):
            try:
                frame = os.read(self.tap_fd, MAX_FRAME)
            except OSError as exc:
                if exc.errno in TRANSIENT:
                    return
                raise
            if not frame:
                return
            try:
                self.sock.send(frame)
            except OSError as exc:
                if exc.errno not in TRANSIENT:
                    raise

    def _veth_to_tap(self) -> None:
        for _ in range(64):
            try:
                frame, addr = self.sock.recvfrom(MAX_FRAME)
            except OSError as exc:
                if exc.errno in TRANSIENT:
                    return
                raise
            if addr[2] == PACKET_OUTGOING:
                continue
            try:
                os.write(self.tap_fd, frame)
            except OSError as exc:
                if exc.errno not in TRANSIENT:
                    raise
