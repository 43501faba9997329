"""A hostile guest agent: speaks the agent protocol, answers whatever a test scripts.

The guest is untrusted: a root process in it can replace ``banger-agent``
and answer the host anything. :class:`HostileAgent` plays that process in
tests. It serves ``docs/agent-protocol.md`` (HTTP/1.1, then frames after a
``101``) on a Unix socket and answers each path with a scripted reply:

```python
def test_cp_refuses_a_hard_link_out(banger_sim_host, banger_hostile_agent):
    banger_sim_host.cli("vm", "create", "box")
    agent = banger_hostile_agent(banger_sim_host, "box")
    agent.on("/files/get", archive_reply(make_tar(("hard", "top/h", "/etc/passwd"))))
    result = banger_sim_host.cli("vm", "cp", "box:/top", str(tmp_path), check=False)
```

:meth:`HostileAgent.take_over` puts it in place of a running simulated VM's
agent: the simulator forwards ``CONNECT 1024`` to ``<vsock dir>/1024.sock``
(the guest's ``/dev/banger-vsock/1024.sock``), which is where a guest's
own agent listens; the real agent's socket is moved aside and put back by
:meth:`HostileAgent.close`. Unscripted paths answer like a healthy agent
(``/healthz``) or 404, so the VM stays usable.

Standard library only.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import struct
import tarfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

FRAME = struct.Struct(">cI")
UPGRADE = "banger-stream/1"


@dataclass
class Request:
    """One request the hostile agent received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


Reply = Callable[[Request, IO[bytes], IO[bytes]], None]
"""A scripted answer: ``reply(request, rfile, wfile)`` writes whatever it likes."""


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    """One protocol frame (no size check: a hostile agent may send any)."""
    return FRAME.pack(kind, len(payload)) + payload


def json_reply(body: Any, status: int = 200) -> Reply:
    """Answer with ``body`` as JSON (any shape, any size)."""

    def reply(_req: Request, _rfile: IO[bytes], wfile: IO[bytes]) -> None:
        data = json.dumps(body).encode()
        wfile.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )

    return reply


def raw_reply(data: bytes) -> Reply:
    """Answer with exactly these bytes, then close."""

    def reply(_req: Request, _rfile: IO[bytes], wfile: IO[bytes]) -> None:
        wfile.write(data)

    return reply


def stream_reply(
    frames: Iterable[bytes], headers: dict[str, str] | None = None, *, read_input: bool = False
) -> Reply:
    """Switch to frames (``101``) and send ``frames`` (built with :func:`frame`).

    ``read_input``: first read the client's data frames up to its empty
    ``D`` frame (for ``/files/put``).
    """

    def reply(_req: Request, rfile: IO[bytes], wfile: IO[bytes]) -> None:
        head = f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: {UPGRADE}\r\nConnection: Upgrade\r\n"
        for key, value in (headers or {}).items():
            head += f"{key}: {value}\r\n"
        wfile.write((head + "\r\n").encode())
        wfile.flush()
        if read_input:
            while True:
                raw = rfile.read(FRAME.size)
                if len(raw) < FRAME.size:
                    return
                kind, size = FRAME.unpack(raw)
                payload = rfile.read(size)
                if kind == b"D" and not payload:
                    break
        for item in frames:
            wfile.write(item)
            wfile.flush()

    return reply


def archive_reply(
    archive: bytes,
    *,
    exit: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    chunk: int = 65536,
) -> Reply:
    """A ``/files/get`` answer carrying ``archive`` in ``D`` frames, then ``X``."""
    frames = [frame(b"D", archive[i : i + chunk]) for i in range(0, len(archive), chunk)]
    frames += [frame(b"D"), frame(b"X", json.dumps(exit or {"exit_code": 0}).encode())]
    return stream_reply(frames, headers)


def exit_reply(info: dict[str, Any], output: bytes = b"") -> Reply:
    """A ``/exec`` answer: ``output`` on stdout, then the ``X`` frame ``info`` (any shape)."""
    frames = ([frame(b"1", output)] if output else []) + [frame(b"X", json.dumps(info).encode())]
    return stream_reply(frames)


def make_tar(*entries: tuple[Any, ...]) -> bytes:
    """A pax tar archive of crafted entries, the way a hostile guest would write it.

    Entries: ``("file", name, data[, mode])``, ``("dir", name[, mode])``,
    ``("sym", name, target)``, ``("hard", name, target)``, ``("fifo", name)``,
    ``("chr", name)``.
    """
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            kind, name = entry[0], entry[1]
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(entry[2])
                info.mode = entry[3] if len(entry) > 3 else 0o644
                tar.addfile(info, io.BytesIO(entry[2]))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, entry[2] if len(entry) > 2 else 0o755
            elif kind in ("sym", "hard"):
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = entry[2]
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            else:
                raise ValueError(f"unknown entry kind {kind!r}")
            tar.addfile(info)
    return out.getvalue()


def healthy(_req: Request, _rfile: IO[bytes], wfile: IO[bytes]) -> None:
    """What an honest agent answers to ``/healthz``."""
    json_reply(
        {
            "status": "ok",
            "agent_version": 2,
            "protocol": "banger-agent/2",
            "features": ["healthz", "ports", "exec", "files"],
            "hostname": "hostile",
            "uptime_seconds": 1.0,
        }
    )(_req, _rfile, wfile)


@dataclass
class HostileAgent:
    """A scripted agent on the Unix socket ``path`` (see the module docstring)."""

    path: Path
    replies: dict[str, Reply] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    _moved: Path | None = None
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _closed: bool = False

    def on(self, path: str, reply: Reply) -> HostileAgent:
        """Answer requests for ``path`` with ``reply`` from now on."""
        self.replies[path] = reply
        return self

    # -- life cycle ------------------------------------------------------------
    @classmethod
    def take_over(cls, host: Any, vm: str, port: int = 1024) -> HostileAgent:
        """Replace the agent of the running simulated VM ``vm`` on ``host`` (a SimulatedHost)."""
        vm_id = host.json("vm", "show", vm)["id"]
        vsock_dir = None
        for state in Path(host.fcsim_run_dir).glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(state.read_text())
                if data.get("vm_id") in (vm_id, f"banger-{vm_id}"):
                    vsock_dir = Path(data["dirs"][0]) / "vsock"
        if vsock_dir is None:
            raise RuntimeError(f"no simulator found for VM {vm} ({vm_id})")
        agent = cls(vsock_dir / f"{port}.sock")
        agent._moved = agent.path.with_name(f"{port}.sock.real")
        os.rename(agent.path, agent._moved)
        agent.start()
        return agent

    def start(self) -> HostileAgent:
        """Listen on :attr:`path` and serve in a background thread."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o777)
        sock.listen(64)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; give the real agent its socket back (after :meth:`take_over`)."""
        if self._closed:
            return
        self._closed = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        if self._moved is not None:
            with contextlib.suppress(OSError):
                os.rename(self._moved, self.path)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> HostileAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- serving ---------------------------------------------------------------
    def _serve(self) -> None:
        assert self._sock is not None
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        rfile, wfile = conn.makefile("rb"), conn.makefile("wb")
        try:
            while True:
                req = self._read_request(rfile)
                if req is None:
                    return
                self.requests.append(req)
                reply = self.replies.get(req.path)
                if reply is None:
                    reply = healthy if req.path == "/healthz" else json_reply({"error": "no"}, 404)
                reply(req, rfile, wfile)
                wfile.flush()
                if req.method == "POST":  # streams end the connection
                    return
        except (OSError, ValueError):
            return
        finally:
            with contextlib.suppress(OSError):
                wfile.close()
                rfile.close()
                conn.close()

    @staticmethod
    def _read_request(rfile: IO[bytes]) -> Request | None:
        line = rfile.readline(65536)
        if not line:
            return None
        method, path, *_ = line.decode("latin-1").split()
        headers: dict[str, str] = {}
        while True:
            raw = rfile.readline(65536)
            if raw in (b"\r\n", b"\n", b""):
                break
            key, _, value = raw.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        data = rfile.read(length) if length else b""
        body = json.loads(data) if data else None
        return Request(method, path.split("?", 1)[0], headers, body)
