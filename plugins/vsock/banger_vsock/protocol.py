"""The host side of the guest agent protocol (version 2): HTTP/1.1, then frames.

Standard library only and cheap to import: the CLI uses it on a socket the
daemon handed over. A frame is one type byte, a 4-byte big-endian length and
the payload; see ``docs/agent-protocol.md``.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from typing import Any

from banger_core import BangerError

PROTOCOL_VERSION = 2
UPGRADE_TOKEN = "banger-stream/1"
FRAME_HEADER = struct.Struct(">cI")
MAX_FRAME = 1 << 20
MAX_HEADER_BYTES = 65536
MAX_BODY = 8 << 20
"""Bytes in a plain (JSON) answer from the agent; more is refused, not read."""

F_STDIN = b"0"
F_SIGNAL = b"S"
F_WINSIZE = b"W"
F_STDOUT = b"1"
F_STDERR = b"2"
F_EXIT = b"X"
F_DATA = b"D"


class AgentError(BangerError):
    """The agent refused a request or the stream broke."""


class Response:
    """Status, headers and (for non-101 answers) the body of one HTTP response."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        """The body as JSON."""
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            raise AgentError(f"the agent answered {self.status} with a non-JSON body") from None

    def error_message(self) -> str:
        """The agent's one-line error."""
        try:
            body = json.loads(self.body)
        except (ValueError, RecursionError):
            return f"the agent answered {self.status}"
        error = body.get("error") if isinstance(body, dict) else None
        return guest_text(error or f"the agent answered {self.status}")


class AgentConnection:
    """One connected stream to the agent (a vsock connection or a Unix socket)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb")
        self._wlock = threading.Lock()

    def close(self) -> None:
        """Close the stream."""
        self.rfile.close()
        self.sock.close()

    def __enter__(self) -> AgentConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP ------------------------------------------------------------------
    def request(
        self, method: str, path: str, body: Any = None, *, upgrade: bool = False
    ) -> Response:
        """Send one request and read the response head (and body unless 101)."""
        data = b"" if body is None else json.dumps(body).encode()
        lines = [f"{method} {path} HTTP/1.1", "Host: banger-agent", f"Content-Length: {len(data)}"]
        if body is not None:
            lines.append("Content-Type: application/json")
        if upgrade:
            lines += [f"Upgrade: {UPGRADE_TOKEN}", "Connection: Upgrade"]
        try:
            self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
            return self._read_response()
        except (OSError, ValueError) as exc:
            raise AgentError(f"talking to the agent failed: {exc}") from None

    def _read_response(self) -> Response:
        status_line = self.rfile.readline(MAX_HEADER_BYTES)
        if not status_line:
            raise AgentError("the agent closed the connection without answering")
        parts = status_line.decode("latin-1").split(None, 2)
        if (
            len(parts) < 2
            or not parts[0].startswith("HTTP/")
            or not parts[1].isdigit()
            or len(parts[1]) != 3
        ):
            raise AgentError(f"the agent sent a bad status line {status_line[:60]!r}")
        headers: dict[str, str] = {}
        total = 0
        while True:
            line = self.rfile.readline(MAX_HEADER_BYTES)
            total += len(line)
            if not line or total > MAX_HEADER_BYTES:
                raise AgentError("the agent sent a truncated response")
            if line in (b"\r\n", b"\n"):
                break
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        status = int(parts[1])
        body = b""
        if status != 101:
            declared = headers.get("content-length") or "0"
            if not declared.isdigit() or len(declared) > 12:
                raise AgentError(f"the agent sent a bad Content-Length {declared[:20]!r}")
            length = int(declared)
            if length > MAX_BODY:
                raise AgentError(
                    f"the agent's answer is {length} bytes; at most {MAX_BODY} are accepted"
                )
            body = self.rfile.read(length) if length else b""
            if len(body) != length:
                raise AgentError("the agent closed the connection mid-response")
        return Response(status, headers, body)

    def get_json(self, path: str) -> Any:
        """``GET path``; the JSON body of a 200 answer, else :class:`AgentError`."""
        resp = self.request("GET", path)
        if resp.status != 200:
            raise AgentError(f"GET {path}: {resp.error_message()}")
        return resp.json()

    def open_stream(self, path: str, body: dict[str, Any]) -> Response:
        """``POST path`` with an Upgrade; the 101 response, else :class:`AgentError`."""
        resp = self.request("POST", path, body, upgrade=True)
        if resp.status != 101:
            raise AgentError(resp.error_message())
        return resp

    # -- frames ----------------------------------------------------------------
    def send(self, kind: bytes, payload: bytes = b"") -> None:
        """Send one frame (splitting large payloads); thread-safe."""
        with self._wlock:
            view = memoryview(payload)
            while True:
                part = view[:MAX_FRAME]
                self.sock.sendall(FRAME_HEADER.pack(kind, len(part)) + part)
                view = view[MAX_FRAME:]
                if not view:
                    return

    def recv(self) -> tuple[bytes, bytes]:
        """Read one frame; :class:`AgentError` when the stream ends early."""
        head = self.rfile.read(FRAME_HEADER.size)
        if len(head) != FRAME_HEADER.size:
            raise AgentError("the agent closed the stream before the program's exit status")
        kind, size = FRAME_HEADER.unpack(head)
        if size > MAX_FRAME:
            raise AgentError(f"the agent sent a {size}-byte frame")
        payload = self.rfile.read(size) if size else b""
        if len(payload) != size:
            raise AgentError("the agent closed the stream mid-frame")
        return kind, payload


def exit_status(payload: bytes) -> dict[str, Any]:
    """Decode an ``X`` frame into its documented shape (other keys kept, ignored).

    ``exit_code`` becomes an int in 0..255 or None, ``signal`` an int in
    1..64 or None, ``error`` a printable bounded line or None; anything
    else is an :class:`AgentError`.
    """
    try:
        info = json.loads(payload)
    except (ValueError, RecursionError):
        raise AgentError("the agent sent a bad exit frame") from None
    if not isinstance(info, dict):
        raise AgentError("the agent sent a bad exit frame")
    code, sig, error = info.get("exit_code"), info.get("signal"), info.get("error")
    if code is not None and (
        isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 255
    ):
        raise AgentError(f"the agent sent a bad exit code {guest_text(code, 40)!r}")
    if sig is not None and (
        isinstance(sig, bool) or not isinstance(sig, int) or not 1 <= sig <= 64
    ):
        raise AgentError(f"the agent sent a bad signal number {guest_text(sig, 40)!r}")
    if error is not None and not isinstance(error, str):
        raise AgentError("the agent sent a bad exit frame (error is not a string)")
    info["error"] = guest_text(error) if error else None
    return info


GUEST_TEXT_MAX = 500


def guest_text(value: Any, limit: int = GUEST_TEXT_MAX) -> str:
    """A string from the guest made safe to show: one line, no control characters, bounded.

    A hostile guest could otherwise move the user's cursor, rewrite the
    terminal's title or flood it through an error message or a host name.
    """
    text = value if isinstance(value, str) else str(value)
    text = "".join(ch if ch.isprintable() else "?" for ch in text[: limit + 1])
    return text if len(text) <= limit else text[:limit] + "..."


def shell_exit_code(info: dict[str, Any]) -> int:
    """The exit status a shell would report: the code, or 128 + signal."""
    if info.get("signal"):
        return 128 + int(info["signal"])
    code = info.get("exit_code")
    return int(code) if code is not None else 1
