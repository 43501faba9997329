"""A small synchronous RPC client (standard library only, used by the CLI)."""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from banger_core.errors import DaemonError, DeniedError, error_from_code
from banger_core.rpc.protocol import MAX_LINE, request


class RPCClient:
    """One connection to ``bangerd``; closing it cancels in-flight requests."""

    def __init__(self, socket_path: Path, timeout: float | None = None) -> None:
        self.socket_path = socket_path
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self._buf = b""
        self.timeout = timeout

    def connect(self) -> RPCClient:
        """Open the connection; raise :class:`DaemonError` when nobody listens."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            self._connect_waiting(sock)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise DaemonError(f"bangerd is not running (no listener on {self.socket_path})")
        except PermissionError:
            sock.close()
            raise DeniedError(
                f"permission denied on {self.socket_path}: bangerd runs, but you may not use "
                "it; ask its administrator to add you to its [daemon] socket_group"
            ) from None
        except OSError as exc:  # the path itself is unusable (a file in the way, too long)
            sock.close()
            raise DaemonError(
                f"cannot reach bangerd on {self.socket_path}: {exc.strerror or exc}"
            ) from None
        self._sock = sock
        return self

    def _connect_waiting(self, sock: socket.socket) -> None:
        """``connect``, waiting while the daemon's listen queue is full.

        A Unix socket with a timeout answers a full queue with ``EAGAIN`` at
        once (a blocking one waits in the kernel): try again until the timeout.
        """
        deadline = time.monotonic() + (self.timeout if self.timeout is not None else 60.0)
        pause = 0.001
        while True:
            try:
                sock.connect(str(self.socket_path))
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise DaemonError(
                        f"bangerd did not accept a connection on {self.socket_path} in time "
                        "(its queue of new connections stayed full)"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)

    def close(self) -> None:
        """Close the connection."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> RPCClient:
        return self.connect() if self._sock is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Call ``method`` and return its result, re-raising daemon errors."""
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        req_id = next(self._ids)
        try:
            try:
                self._sock.sendall(request(req_id, method, params))
            except (BrokenPipeError, ConnectionResetError):
                # The daemon may have answered before we wrote (a refusal does):
                # read what it said before it hung up.
                line = self._waiting_reply()
            else:
                line = self._readline()
        except (BrokenPipeError, ConnectionResetError):
            raise DaemonError("bangerd closed the connection")
        except TimeoutError:
            raise DaemonError(f"bangerd did not answer {method} in time")
        try:
            msg = json.loads(line)
        except ValueError:
            raise DaemonError("bangerd sent a reply that is not JSON")
        if "error" in msg:
            err = msg["error"]
            raise error_from_code(err.get("code", "error"), err.get("message", "unknown error"))
        return msg.get("result")

    def call_with_fd(self, method: str, params: dict[str, Any] | None = None) -> tuple[Any, int]:
        """Call a method that answers with a file descriptor (``SCM_RIGHTS``)."""
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        self._sock.sendall(request(next(self._ids), method, params))
        fds: list[int] = []
        while b"\n" not in self._buf:
            data, got, _flags, _addr = socket.recv_fds(self._sock, 65536, 4)
            fds += got
            if not data:
                raise DaemonError("bangerd closed the connection")
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        msg = json.loads(line)
        if "error" in msg:
            for fd in fds:
                os.close(fd)
            err = msg["error"]
            raise error_from_code(err.get("code", "error"), err.get("message", "unknown error"))
        if not fds:
            raise DaemonError(f"bangerd answered {method} without a file descriptor")
        for extra in fds[1:]:
            os.close(extra)
        return msg.get("result"), fds[0]

    def _waiting_reply(self) -> bytes:
        """A reply already in our receive buffer after the daemon hung up, if any."""
        assert self._sock is not None
        self._sock.settimeout(1.0)
        try:
            return self._readline()
        except (DaemonError, OSError):
            raise DaemonError("bangerd closed the connection") from None
        finally:
            self._sock.settimeout(self.timeout)

    def _readline(self) -> bytes:
        assert self._sock is not None
        while b"\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise DaemonError("bangerd closed the connection")
            self._buf += chunk
            if len(self._buf) > MAX_LINE:
                raise DaemonError("response too large")
        line, self._buf = self._buf.split(b"\n", 1)
        return line
