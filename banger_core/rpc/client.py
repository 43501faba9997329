"""A small synchronous RPC client (standard library only, used by the CLI)."""

from __future__ import annotations

import itertools
import json
import os
import socket
import struct
from pathlib import Path
from typing import Any

from banger_core.errors import DaemonError, error_from_code
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
            sock.connect(str(self.socket_path))
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise DaemonError(f"bangerd is not running (no listener on {self.socket_path})")
        except PermissionError:
            sock.close()
            raise DaemonError(f"permission denied on {self.socket_path}")
        self._sock = sock
        return self

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
            self._sock.sendall(request(req_id, method, params))
            line = self._readline()
        except (BrokenPipeError, ConnectionResetError):
            raise DaemonError("bangerd closed the connection")
        except TimeoutError:
            raise DaemonError(f"bangerd did not answer {method} in time")
        msg = json.loads(line)
        if "error" in msg:
            err = msg["error"]
            raise error_from_code(err.get("code", "error"), err.get("message", "unknown error"))
        return msg.get("result")

    def call_with_fd(self, method: str, params: dict[str, Any] | None = None) -> tuple[Any, int]:
        """Call a method whose answer carries a file descriptor; return ``(result, fd)``.

        The caller owns the descriptor. :class:`DaemonError` when the daemon
        answered without one.
        """
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        req_id = next(self._ids)
        fds: list[int] = []
        try:
            self._sock.sendall(request(req_id, method, params))
            while b"\n" not in self._buf:
                data, anc, _flags, _addr = self._sock.recvmsg(
                    65536, socket.CMSG_SPACE(struct.calcsize("i") * 4))
                for level, kind, payload in anc:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        usable = len(payload) - len(payload) % struct.calcsize("i")
                        fds.extend(struct.unpack(f"{usable // 4}i", payload[:usable]))
                if not data:
                    raise DaemonError("bangerd closed the connection")
                self._buf += data
            line, self._buf = self._buf.split(b"\n", 1)
        except (BrokenPipeError, ConnectionResetError):
            raise DaemonError("bangerd closed the connection")
        except TimeoutError:
            raise DaemonError(f"bangerd did not answer {method} in time")
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
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
