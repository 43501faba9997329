"""A small QMP (QEMU Machine Protocol) client.

QMP is JSON lines over a socket: QEMU greets with ``{"QMP": {...}}``, the
client enters command mode with ``qmp_capabilities``, then each
``{"execute": ..., "arguments": ...}`` gets ``{"return": ...}`` or
``{"error": {"class": ..., "desc": ...}}``. Asynchronous events
(``{"event": ...}``) may arrive at any time; they are kept in
:attr:`QmpClient.events`.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

CTRL_ALT_DEL = [
    {"type": "qcode", "data": "ctrl"},
    {"type": "qcode", "data": "alt"},
    {"type": "qcode", "data": "delete"},
]
"""The ``send-key`` keys for Ctrl-Alt-Del."""


class QmpError(Exception):
    """A QMP command failed, or the connection broke."""


def abstract_address(name: str) -> str:
    """The Python ``AF_UNIX`` address of the abstract socket ``name``."""
    return "\0" + name


class QmpClient:
    """One QMP connection; :meth:`execute` is thread-safe."""

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        self.address = address
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        self.greeting: dict[str, Any] | None = None
        self.lock = threading.Lock()

    def connect(self, wait: float = 10.0, alive: Callable[[], bool] = lambda: True) -> QmpClient:
        """Connect, read the greeting, enable commands.

        Retries until ``wait`` passes or ``alive()`` (is QEMU still running?)
        turns False.
        """
        deadline = time.monotonic() + wait
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.address)
                break
            except OSError as exc:
                sock.close()
                if time.monotonic() >= deadline or not alive():
                    raise QmpError(f"cannot connect to QMP: {exc}") from None
                time.sleep(0.02)
        self.sock = sock
        greeting = self._read_message()
        if "QMP" not in greeting:
            raise QmpError(f"unexpected QMP greeting: {greeting}")
        self.greeting = greeting
        self.execute("qmp_capabilities")
        return self

    def _read_message(self) -> dict[str, Any]:
        assert self.sock is not None
        while b"\n" not in self.buffer:
            try:
                chunk = self.sock.recv(65536)
            except OSError as exc:
                raise QmpError(f"QMP connection failed: {exc}") from None
            if not chunk:
                raise QmpError("QMP connection closed")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        try:
            message = json.loads(line)
        except ValueError:
            raise QmpError(f"bad QMP message: {line[:200]!r}") from None
        if not isinstance(message, dict):
            raise QmpError(f"bad QMP message: {line[:200]!r}")
        return message

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run ``command``; return its ``return`` value or raise :class:`QmpError`."""
        request: dict[str, Any] = {"execute": command}
        if arguments is not None:
            request["arguments"] = arguments
        with self.lock:
            if self.sock is None:
                raise QmpError("QMP is not connected")
            try:
                self.sock.sendall(json.dumps(request).encode() + b"\n")
            except OSError as exc:
                raise QmpError(f"QMP connection failed: {exc}") from None
            while True:
                message = self._read_message()
                if "event" in message:
                    self.events.append(message)
                    continue
                if "error" in message:
                    err = message["error"]
                    raise QmpError(f"{command}: {err.get('class')}: {err.get('desc')}")
                if "return" in message:
                    return message["return"]

    def send_ctrl_alt_del(self) -> None:
        """Press Ctrl-Alt-Del on the guest's keyboard (i8042)."""
        self.execute("send-key", {"keys": CTRL_ALT_DEL})

    def close(self) -> None:
        """Close the connection (idempotent)."""
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()
