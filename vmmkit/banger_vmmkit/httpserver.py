"""The API transport: HTTP/1.1 over a Unix socket, framed like micro-http.

One thread serves every connection with a selector and handles requests one at
a time, as Firecracker's API thread does. Responses are byte-exact:

* status line without a reason phrase: ``HTTP/1.1 204 \\r\\n``;
* ``Server: Firecracker API`` and ``Connection: keep-alive`` always;
* ``Deprecation: true`` when asked;
* ``Content-Type: application/json`` + ``Content-Length`` unless 204/100.

Parse errors (bad request line, payload over the limit) get micro-http's
``{ "error": "...\\nAll previous unanswered requests will be dropped." }``.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
from collections.abc import Callable
from dataclasses import dataclass

METHODS = {"GET", "PUT", "PATCH", "DELETE"}


@dataclass
class Request:
    """A parsed request."""

    method: str
    path: str
    body: bytes | None
    headers: dict[str, str]


@dataclass
class Response:
    """What the handler answers."""

    status: int
    body: bytes | None = None
    deprecation: bool = False


def render(resp: Response) -> bytes:
    """Serialize a response exactly as micro-http does."""
    out = [
        f"HTTP/1.1 {resp.status} \r\n",
        "Server: Firecracker API\r\n",
        "Connection: keep-alive\r\n",
    ]
    if resp.deprecation:
        out.append("Deprecation: true\r\n")
    body = resp.body or b""
    if resp.status not in (100, 204):
        out.append("Content-Type: application/json\r\n")
        out.append(f"Content-Length: {len(body)}\r\n")
    out.append("\r\n")
    return "".join(out).encode() + (body if resp.status not in (100, 204) else b"")


class ParseError(Exception):
    """A request could not be parsed (micro-http ``RequestError``)."""


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.continued = False


class HttpServer:
    """Serve ``handler`` on a bound, listening AF_UNIX socket."""

    def __init__(
        self,
        listener: socket.socket,
        handler: Callable[[Request], Response],
        max_payload: int = 51200,
    ) -> None:
        self.listener = listener
        self.handler = handler
        self.max_payload = max_payload
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.conns: dict[int, _Conn] = {}
        self.tasks: list[Callable[[], None]] = []
        self.stopping = False

    def wake(self) -> None:
        """Wake the loop (thread- and signal-safe)."""
        with contextlib.suppress(OSError):
            os.write(self.wake_w, b"x")

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the server thread at the next loop turn."""
        self.tasks.append(fn)
        self.wake()

    def stop(self) -> None:
        """Ask the loop to return."""
        self.stopping = True
        self.wake()

    def close(self) -> None:
        """Close every connection and the listener (the socket file stays)."""
        for conn in list(self.conns.values()):
            self._drop(conn)
        with contextlib.suppress(Exception):
            self.sel.unregister(self.listener)
        self.listener.close()

    def serve_forever(self) -> None:
        """Run until :meth:`stop`."""
        while not self.stopping:
            try:
                events = self.sel.select(timeout=1.0)
            except InterruptedError:
                continue
            for key, _mask in events:
                if key.data == "wake":
                    with contextlib.suppress(OSError):
                        os.read(self.wake_r, 4096)
                elif key.fileobj is self.listener:
                    self._accept()
                else:
                    self._readable(key.data)
            while self.tasks:
                self.tasks.pop(0)()
            if self.stopping:
                break

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sock.setblocking(False)
            conn = _Conn(sock)
            self.conns[sock.fileno()] = conn
            self.sel.register(sock, selectors.EVENT_READ, conn)

    def _drop(self, conn: _Conn) -> None:
        with contextlib.suppress(Exception):
            self.sel.unregister(conn.sock)
        self.conns.pop(conn.sock.fileno(), None)
        with contextlib.suppress(OSError):
            conn.sock.close()

    def _send(self, conn: _Conn, data: bytes) -> bool:
        try:
            conn.sock.setblocking(True)
            conn.sock.settimeout(5.0)
            conn.sock.sendall(data)
            conn.sock.setblocking(False)
            return True
        except OSError:
            self._drop(conn)
            return False

    def _readable(self, conn: _Conn) -> None:
        try:
            chunk = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        if not chunk:
            self._drop(conn)
            return
        conn.buf += chunk
        while True:
            try:
                req = self._parse(conn)
            except ParseError as exc:
                body = (
                    '{ "error": "'
                    + str(exc)
                    + '\nAll previous unanswered requests will be dropped." }'
                ).encode()
                self._send(conn, render(Response(400, body)))
                self._drop(conn)
                return
            if req is None:
                return
            resp = self.handler(req)
            if not self._send(conn, render(resp)):
                return
            if self.stopping:
                return

    def _parse(self, conn: _Conn) -> Request | None:
        head_end = conn.buf.find(b"\r\n\r\n")
        if head_end < 0:
            if len(conn.buf) > 65536:
                raise ParseError("Invalid request.")
            return None
        head = conn.buf[:head_end].decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise ParseError("Invalid request.")
        method, uri, version = parts
        if method not in METHODS:
            raise ParseError("Invalid HTTP Method: Unsupported HTTP method.")
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            raise ParseError("Invalid HTTP Version: Unsupported HTTP version.")
        if uri.startswith("http://"):
            rest = uri[len("http://") :]
            slash = rest.find("/")
            uri = rest[slash:] if slash >= 0 else "/"
        if not uri.startswith("/"):
            raise ParseError("Invalid URI.")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            if ":" not in line:
                raise ParseError("Invalid header. Reason: Invalid header.")
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            raise ParseError(
                "Invalid header. Reason: Invalid value. Key:Transfer-Encoding; Value:chunked"
            )
        try:
            length = int(headers.get("content-length", "0") or "0")
        except ValueError:
            raise ParseError("Invalid header. Reason: Invalid value. Key:Content-Length") from None
        if length > self.max_payload:
            raise ParseError(
                f"Request payload with size {length} is larger than the limit of "
                f"{self.max_payload} allowed by server."
            )
        total = head_end + 4 + length
        if len(conn.buf) < total:
            if (
                length
                and headers.get("expect", "").lower() == "100-continue"
                and not conn.continued
            ):
                conn.continued = True
                self._send(conn, render(Response(100)))
            return None
        body = conn.buf[head_end + 4 : total] if length > 0 else None
        conn.buf = conn.buf[total:]
        conn.continued = False
        path = uri.split("?", 1)[0]
        return Request(method, path, body, headers)
