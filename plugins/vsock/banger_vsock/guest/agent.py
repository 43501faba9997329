#!/usr/bin/python3
"""banger-agent: the guest agent, a small HTTP/1.1 server inside the VM.

Installed into images as ``/usr/lib/banger/banger-agent``; standard library
only and standalone (copied into the image as is).

It listens on AF_VSOCK (any CID, port from ``--port`` or
``/run/banger/agent.json``, default 1024). When ``BANGER_VSOCK_DIR`` is set
(the Firecracker simulator) it listens instead on the Unix socket
``$BANGER_VSOCK_DIR/<port>.sock``, where the simulator forwards
``CONNECT <port>``.

Endpoints: ``GET /healthz``, ``GET /ports`` (JSON), and the streaming
``POST /exec``, ``POST /files/get``, ``POST /files/put`` (HTTP/1.1 Upgrade to
a framed stream). Anything else is a JSON 404. The protocol, versioned, is
documented in ``docs/agent-protocol.md``; the host side of it lives in the
``banger-vsock`` plugin.

It also serves the virtio-serial port ``banger.agent``
(``/dev/virtio-ports/banger.agent``) when the VM has one: ``banger-fcqemu``
bridges the hybrid-vsock socket to it where ``/dev/vhost-vsock`` is missing.
Connections are multiplexed over the port in frames (see
``plugins/fcqemu/banger_fcqemu/serialmux.py`` for the protocol, whose constants are
repeated here because this file is standalone).

The HTTP handler works on any byte stream, so both transports serve it.

Extension points (docs/agent-protocol.md, "Extending the agent"): a drop-in
module in ``/usr/lib/banger/agent.d/*.py`` (installed by a plugin's image
provisioning step) defines ``setup(agent)`` and calls
``agent.register(method, path, handler, feature=..., streaming=...)``; the
operation is served next to the built-in ones and its feature is listed by
``GET /healthz``, so the host can tell whether a guest supports it.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import json
import os
import signal
import socket
import socketserver
import stat
import struct
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any, NamedTuple

AGENT_VERSION = 2
"""Version of the agent's HTTP API (bumped on incompatible changes)."""
PROTOCOL = f"banger-agent/{AGENT_VERSION}"
DEFAULT_PORT = 1024
AGENT_CONFIG = "/run/banger/agent.json"
STARTED = time.monotonic()

# /proc/net/* socket states: TCP LISTEN, and an unconnected UDP socket.
TCP_LISTEN = "0A"
UDP_UNCONN = "07"


# --------------------------------------------------------------------------
# /ports


def decode_address(hex_addr: str) -> tuple[str, int]:
    """Decode ``/proc/net`` ``ADDR:PORT`` hex (host-endian words) to (ip, port)."""
    addr, _, port = hex_addr.partition(":")
    raw = bytes.fromhex(addr)
    # Each 32-bit word is stored in host byte order (little-endian on x86/arm).
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if sys.byteorder == "big":
        words = raw
    ip = ipaddress.ip_address(words)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip), int(port, 16)


def parse_proc_net(text: str, proto: str) -> list[dict[str, Any]]:
    """Parse one ``/proc/net/{tcp,tcp6,udp,udp6}`` table into listening sockets."""
    want = TCP_LISTEN if proto.startswith("tcp") else UDP_UNCONN
    sockets = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != want:
            continue
        try:
            address, port = decode_address(fields[1])
        except ValueError:
            continue
        sockets.append(
            {
                "proto": proto.rstrip("6"),
                "family": "ipv6" if proto.endswith("6") else "ipv4",
                "address": address,
                "port": port,
                "uid": int(fields[7]),
                "inode": int(fields[9]),
            }
        )
    return sockets


def socket_owners(proc: str = "/proc") -> dict[int, int]:
    """Map socket inode → lowest pid holding it, by scanning ``/proc/*/fd``."""
    owners: dict[int, int] = {}
    try:
        pids = sorted(int(p) for p in os.listdir(proc) if p.isdigit())
    except OSError:
        return owners
    for pid in pids:
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                owners.setdefault(int(target[8:-1]), pid)
    return owners


def process_info(pid: int, proc: str = "/proc") -> dict[str, Any]:
    """Return ``{"process": comm, "command": cmdline}`` for ``pid`` (best effort)."""
    info: dict[str, Any] = {"process": None, "command": None}
    with contextlib.suppress(OSError), open(f"{proc}/{pid}/comm") as f:
        info["process"] = f.read().strip()
    with contextlib.suppress(OSError):
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            args = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
        info["command"] = " ".join(args) or info["process"]
    return info


def listening_ports(proc: str = "/proc") -> list[dict[str, Any]]:
    """List listening TCP and bound UDP sockets with their owning process."""
    sockets: list[dict[str, Any]] = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open(f"{proc}/net/{proto}") as f:
                sockets.extend(parse_proc_net(f.read(), proto))
        except OSError:
            continue
    owners = socket_owners(proc)
    infos: dict[int, dict[str, Any]] = {}
    for sock in sockets:
        pid = owners.get(sock["inode"])
        sock["pid"] = pid
        if pid is not None and pid not in infos:
            infos[pid] = process_info(pid, proc)
        sock.update(infos.get(pid) or {"process": None, "command": None})
    sockets.sort(key=lambda s: (s["proto"], s["port"], s["family"], s["address"]))
    return sockets


# --------------------------------------------------------------------------
# Streams: the framing used after ``101 Switching Protocols``
#
# A frame is one type byte, a 4-byte big-endian length and that many bytes.
# See docs/agent-protocol.md for the whole protocol.

UPGRADE_TOKEN = "banger-stream/1"
FRAME_HEADER = struct.Struct(">cI")
MAX_FRAME = 1 << 20
# host -> guest
F_STDIN = b"0"  # bytes for the program's stdin; empty = EOF
F_SIGNAL = b"S"  # ASCII signal number, delivered to the program's process group
F_WINSIZE = b"W"  # ASCII "ROWS COLS" (tty sessions)
# guest -> host
F_STDOUT = b"1"
F_STDERR = b"2"
F_EXIT = b"X"  # JSON {"exit_code": int|null, "signal": int|null, "error": str|null}
# both ways (file transfer)
F_DATA = b"D"  # tar stream bytes; empty = end of stream

GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REQUEST_TIMEOUT = 30.0
"""Seconds a client may take to send a request (line, headers, body)."""
KILL_GRACE = 2.0
MAX_BODY = 1 << 20
NOT_FOUND = 127
"""Exit code of an exec whose program does not exist (as a shell's)."""
CANNOT_RUN = 126
"""Exit code of an exec whose program exists but cannot run: not executable, a directory."""


class StreamClosed(Exception):
    """The peer closed the stream (or sent garbage)."""


def read_exact(rfile: Any, size: int) -> bytes:
    """Read exactly ``size`` bytes; raise :class:`StreamClosed` at EOF."""
    chunks = []
    while size:
        data = rfile.read(size)
        if not data:
            raise StreamClosed("peer closed the stream")
        chunks.append(data)
        size -= len(data)
    return b"".join(chunks)


def read_frame(rfile: Any) -> tuple[bytes, bytes]:
    """Read one frame: ``(type, payload)``."""
    kind, size = FRAME_HEADER.unpack(read_exact(rfile, FRAME_HEADER.size))
    if size > MAX_FRAME:
        raise StreamClosed(f"frame of {size} bytes is too large")
    return kind, read_exact(rfile, size) if size else b""


class FrameWriter:
    """Writes frames to a socket file; safe to share between threads."""

    def __init__(self, wfile: Any) -> None:
        self.wfile = wfile
        self.lock = threading.Lock()
        self.broken = False

    def send(self, kind: bytes, payload: bytes = b"") -> bool:
        """Send one frame (large payloads split); False once the peer is gone."""
        with self.lock:
            if self.broken:
                return False
            try:
                view = memoryview(payload)
                while True:
                    part = view[:MAX_FRAME]
                    self.wfile.write(FRAME_HEADER.pack(kind, len(part)) + bytes(part))
                    view = view[MAX_FRAME:]
                    if not view:
                        break
                self.wfile.flush()
            except (OSError, ValueError):
                self.broken = True
                return False
        return True

    def exit(
        self, code: int | None, sig: int | None = None, error: str | None = None, **extra: Any
    ) -> bool:
        """Send the final frame."""
        body = {"exit_code": code, "signal": sig, "error": error, **extra}
        return self.send(F_EXIT, json.dumps(body).encode())


class DataReader:
    """A file-like reader over ``F_DATA`` frames (ends at an empty frame)."""

    def __init__(self, rfile: Any) -> None:
        self.rfile = rfile
        self.buf = b""
        self.done = False

    def read(self, size: int = -1) -> bytes:
        """Return up to ``size`` bytes (``b""`` at the end of the stream)."""
        while not self.done and (size < 0 or len(self.buf) < size):
            kind, payload = read_frame(self.rfile)
            if kind != F_DATA:
                raise StreamClosed(f"unexpected frame {kind!r} in a data stream")
            if not payload:
                self.done = True
            self.buf += payload
        if size < 0:
            out, self.buf = self.buf, b""
        else:
            out, self.buf = self.buf[:size], self.buf[size:]
        return out


class DataWriter:
    """A file-like writer producing ``F_DATA`` frames of up to 64 KiB."""

    def __init__(self, frames: FrameWriter) -> None:
        self.frames = frames
        self.buf = bytearray()

    def write(self, data: bytes) -> int:
        """Buffer ``data``; send full 64 KiB frames."""
        self.buf += data
        while len(self.buf) >= 65536:
            if not self.frames.send(F_DATA, bytes(self.buf[:65536])):
                raise StreamClosed("peer went away")
            del self.buf[:65536]
        return len(data)

    def close(self) -> None:
        """Send what is buffered and the end-of-stream frame."""
        if self.buf and not self.frames.send(F_DATA, bytes(self.buf)):
            raise StreamClosed("peer went away")
        self.buf.clear()
        if not self.frames.send(F_DATA, b""):
            raise StreamClosed("peer went away")


class RequestError(Exception):
    """A request the agent refuses before switching protocols (JSON error reply)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------
# exec


def exec_env(extra: dict[str, str], tty: bool, term: str | None) -> dict[str, str]:
    """A clean login-like environment for root, plus the client's variables."""
    env = {
        "PATH": GUEST_PATH,
        "HOME": "/root",
        "USER": "root",
        "LOGNAME": "root",
        "SHELL": "/bin/sh",
        "LANG": "C.UTF-8",
    }
    with contextlib.suppress(KeyError, ImportError):
        import pwd

        entry = pwd.getpwuid(os.getuid())
        env.update(
            HOME=entry.pw_dir,
            USER=entry.pw_name,
            LOGNAME=entry.pw_name,
            SHELL=entry.pw_shell or "/bin/sh",
        )
    if tty:
        env["TERM"] = term or "xterm"
    env.update(extra)
    return env


def parse_exec(body: dict[str, Any]) -> dict[str, Any]:
    """Validate an exec request body; raise :class:`RequestError` naming the bad field."""
    argv = body.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise RequestError(400, "argv must be a non-empty list of strings")
    env = body.get("env") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and "=" not in k and "\0" not in k + v
        for k, v in env.items()
    ):
        raise RequestError(400, "env must map variable names (no '=') to strings")
    if any("\0" in a for a in argv):
        raise RequestError(400, "argv must not contain NUL characters")
    cwd = body.get("cwd")
    if cwd is None:
        cwd = exec_env({}, False, None)["HOME"]
        if not os.path.isdir(cwd):
            cwd = "/"
    elif not isinstance(cwd, str) or not cwd:
        raise RequestError(400, "cwd must be a directory path")
    elif not os.path.isdir(cwd):
        raise RequestError(404, f"directory {cwd} does not exist in the guest")
    size = body.get("winsize")
    if size is not None and (
        not isinstance(size, list)
        or len(size) != 2
        or not all(isinstance(n, int) and 0 <= n < 65536 for n in size)
    ):
        raise RequestError(400, "winsize must be [rows, cols]")
    return {
        "argv": argv,
        "env": env,
        "cwd": cwd,
        "tty": bool(body.get("tty")),
        "term": body.get("term") if isinstance(body.get("term"), str) else None,
        "winsize": size,
    }


def set_winsize(fd: int, rows: int, cols: int) -> None:
    """Set a terminal's window size."""
    import fcntl
    import termios

    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class ExecSession:
    """One running program and the stream that drives it."""

    def __init__(self, req: dict[str, Any], rfile: Any, frames: FrameWriter) -> None:
        self.req = req
        self.rfile = rfile
        self.frames = frames
        self.proc: subprocess.Popen | None = None
        self.master: int | None = None
        self.pumps: list[threading.Thread] = []
        self.start_code = CANNOT_RUN

    def spawn(self) -> str | None:
        """Start the program; return a one-line error instead when it cannot start."""
        req = self.req
        env = exec_env(req["env"], req["tty"], req["term"])
        try:
            if req["tty"]:
                import pty
                import termios

                master, slave = pty.openpty()
                if req["winsize"]:
                    set_winsize(slave, *req["winsize"])

                def _controlling_tty() -> None:
                    import fcntl

                    fcntl.ioctl(0, termios.TIOCSCTTY, 0)

                try:
                    self.proc = subprocess.Popen(
                        req["argv"],
                        stdin=slave,
                        stdout=slave,
                        stderr=slave,
                        env=env,
                        cwd=req["cwd"],
                        start_new_session=True,
                        close_fds=True,
                        preexec_fn=_controlling_tty,
                    )
                finally:
                    os.close(slave)
                self.master = master
            else:
                self.proc = subprocess.Popen(
                    req["argv"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=env,
                    cwd=req["cwd"],
                    start_new_session=True,
                    close_fds=True,
                )
        except FileNotFoundError:
            self.start_code = NOT_FOUND
            return f"{req['argv'][0]}: program not found in the guest (PATH={env['PATH']})"
        except PermissionError:
            return f"{req['argv'][0]}: permission denied in the guest (not executable?)"
        except OSError as exc:
            return f"{req['argv'][0]}: cannot run: {exc.strerror or exc}"
        return None

    def _pump(self, fd: int, kind: bytes) -> None:
        try:
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: the pty's other side is closed
                    break
                if not data or not self.frames.send(kind, data):
                    break
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _start_pumps(self) -> None:
        assert self.proc is not None
        sources = (
            [(self.master, F_STDOUT)]
            if self.master is not None
            else [
                (os.dup(self.proc.stdout.fileno()), F_STDOUT),  # type: ignore[union-attr]
                (os.dup(self.proc.stderr.fileno()), F_STDERR),
            ]
        )  # type: ignore[union-attr]
        if self.master is None:
            self.proc.stdout.close()  # type: ignore[union-attr]
            self.proc.stderr.close()  # type: ignore[union-attr]
        for fd, kind in sources:
            t = threading.Thread(target=self._pump, args=(fd, kind), daemon=True)
            t.start()
            self.pumps.append(t)

    def _signal(self, signum: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signum)

    def _input(self) -> None:
        """Read frames from the client until it closes; a vanished client kills the program."""
        assert self.proc is not None
        stdin_fd = self.master if self.master is not None else self.proc.stdin.fileno()  # type: ignore[union-attr]
        stdin_open = True
        try:
            while True:
                kind, payload = read_frame(self.rfile)
                if kind == F_STDIN:
                    if not stdin_open:
                        continue
                    if not payload:
                        stdin_open = False
                        if self.master is None:
                            with contextlib.suppress(OSError):
                                self.proc.stdin.close()  # type: ignore[union-attr]
                        else:
                            with contextlib.suppress(OSError):
                                os.write(self.master, b"\x04")  # ^D: EOF for the terminal
                        continue
                    try:
                        view = memoryview(payload)
                        while view:
                            view = view[os.write(stdin_fd, view) :]
                    except OSError:  # the program closed its stdin: drop the rest
                        stdin_open = False
                elif kind == F_SIGNAL:
                    with contextlib.suppress(ValueError):
                        self._signal(int(payload))
                elif kind == F_WINSIZE and self.master is not None:
                    with contextlib.suppress(ValueError):
                        rows, cols = (int(n) for n in payload.split())
                        set_winsize(self.master, rows, cols)
        except (StreamClosed, OSError, struct.error):
            pass
        # A client closes its side only after the exit frame; earlier, it vanished.
        if self.proc.poll() is None:
            self._terminate()

    def _terminate(self) -> None:
        """The client vanished: SIGHUP the program's group, then SIGKILL after a grace."""
        assert self.proc is not None
        self._signal(signal.SIGHUP)
        try:
            self.proc.wait(KILL_GRACE)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)

    def run(self) -> None:
        """Run the session to the end: output, exit status, cleanup."""
        error = self.spawn()
        if error is not None:
            # As a shell: 127 when the program does not exist, 126 when it cannot run.
            self.frames.exit(self.start_code, error=error)
            return
        assert self.proc is not None
        self._start_pumps()
        reader = threading.Thread(target=self._input, daemon=True)
        reader.start()
        code = self.proc.wait()
        for t in self.pumps:
            t.join()
        if self.proc.stdin:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        if code < 0:
            self.frames.exit(None, sig=-code)
        else:
            self.frames.exit(code)


# --------------------------------------------------------------------------
# file transfer (tar streams)


def _tar_kwargs() -> dict[str, Any]:
    # The host is trusted by the guest: keep modes, owners and links exactly.
    return {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}


def tree_size(path: str) -> int:
    """Bytes of regular files under ``path`` (for the client's progress bar)."""
    if not os.path.isdir(path) or os.path.islink(path):
        return os.lstat(path).st_size if os.path.isfile(path) else 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(root, name))
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
    return total


def resolve_destination(dest: str) -> tuple[str, str | None]:
    """Where an incoming tree lands: ``(directory, new name for the top entry or None)``.

    An existing directory receives the entry under its own name; otherwise
    ``dest``'s parent must exist and the entry takes ``dest``'s name.
    """
    if os.path.isdir(dest):
        return dest, None
    parent = os.path.dirname(dest.rstrip("/")) or "/"
    if dest.endswith("/") or not os.path.isdir(parent):
        missing = dest if dest.endswith("/") else parent
        raise RequestError(404, f"destination directory {missing} does not exist in the guest")
    return parent, os.path.basename(dest.rstrip("/"))


def rename_top(name: str, new_top: str | None) -> str:
    """Replace the first path component of a tar member name."""
    if new_top is None:
        return name
    _top, sep, rest = name.partition("/")
    return new_top + sep + rest


def receive_tree(reader: DataReader, directory: str, new_top: str | None) -> int:
    """Extract a tar stream into ``directory``; return the number of entries.

    On any failure (a full disk, a refused member, a broken stream) the
    entries this transfer created are removed again, so no partial file or
    tree is left behind; files it overwrote keep their new content.
    """
    count = 0
    created: list[str] = []
    current = directory
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                name = member.name.lstrip("/")
                if name.split("/")[0] in ("", "..") or "/../" in f"/{name}/":
                    raise RequestError(400, f"refusing tar member {member.name!r}")
                member.name = rename_top(name, new_top)
                if member.islnk():
                    member.linkname = rename_top(member.linkname.lstrip("/"), new_top)
                created.extend(_new_paths(directory, member.name))
                current = os.path.join(directory, member.name)
                tar.extract(member, directory, **_tar_kwargs())
                count += 1
    except BaseException as exc:
        _remove_created(created)
        if isinstance(exc, OSError) and not exc.filename:
            exc.filename = current  # a failed write (a full disk) names the file
        raise
    return count


def _new_paths(directory: str, name: str) -> list[str]:
    """The paths extracting ``name`` under ``directory`` would create (parents first)."""
    paths = []
    current = directory
    for part in name.split("/"):
        if not part or part == ".":
            continue
        current = os.path.join(current, part)
        if not os.path.lexists(current):
            paths.append(current)
    return paths


def _remove_created(paths: list[str]) -> None:
    """Remove what a failed transfer created, deepest first (best effort)."""
    for path in reversed(paths):
        with contextlib.suppress(OSError):
            if os.path.isdir(path) and not os.path.islink(path):
                os.rmdir(path)
            else:
                os.unlink(path)


def send_tree(path: str, writer: DataWriter) -> None:
    """Write ``path`` (file, directory tree or symlink) as a tar stream."""
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        tar.add(path, arcname=os.path.basename(path.rstrip("/")) or "root", recursive=True)
    writer.close()


# --------------------------------------------------------------------------
# HTTP


# --------------------------------------------------------------------------
# Extension points: operations added by drop-ins
# --------------------------------------------------------------------------

DROPIN_DIR = "/usr/lib/banger/agent.d"
"""Where plugins' image steps put agent drop-ins (``NAME.py`` with ``setup(agent)``)."""
BUILTIN_FEATURES = ("healthz", "ports", "exec", "files")
BUILTIN_PATHS = ("/healthz", "/ports", "/exec", "/files/get", "/files/put")


class Operation(NamedTuple):
    """An operation a drop-in added (see :func:`register`)."""

    feature: str
    handler: Callable[..., Any]
    streaming: bool


#: Added operations by ``(method, path)``.
EXTENSIONS: dict[tuple[str, str], Operation] = {}


def register(
    method: str,
    path: str,
    handler: Callable[..., Any],
    *,
    feature: str,
    streaming: bool = False,
) -> None:
    """Serve ``method path`` with ``handler``; ``feature`` is listed by ``/healthz``.

    Plain (``streaming=False``): ``handler(body)`` gets the request's JSON
    object (``{}`` for a GET) and returns the JSON object to answer with 200.
    Streaming (POST only, the request must carry ``Upgrade: banger-stream/1``):
    ``handler(request, body)`` gets the :class:`Handler`; it answers with
    ``request.switch()`` (a :class:`FrameWriter`) and then reads frames with
    ``read_frame(request.rfile)``, like ``/exec`` and ``/files/put``.
    Either raises :class:`RequestError` for a clean 4xx. Built-in paths and
    features cannot be replaced.
    """
    method = method.upper()
    if method not in ("GET", "POST") or (method == "GET" and streaming):
        raise ValueError(f"cannot register {method} {path} (streaming={streaming})")
    if not path.startswith("/") or path in BUILTIN_PATHS or (method, path) in EXTENSIONS:
        raise ValueError(f"{method} {path} is already served")
    if not feature or feature in BUILTIN_FEATURES:
        raise ValueError(f"feature {feature!r} is empty or built in")
    EXTENSIONS[(method, path)] = Operation(feature, handler, streaming)


def load_dropins(directory: str = DROPIN_DIR) -> list[str]:
    """Run every ``directory/*.py`` drop-in's ``setup(agent)``; return one line per drop-in.

    A drop-in that fails to load is reported and skipped: the agent's own
    operations always stay available.
    """
    import importlib.util

    lines = []
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".py"))
    except OSError:
        return lines
    agent = sys.modules[__name__]
    for name in names:
        path = os.path.join(directory, name)
        try:
            spec = importlib.util.spec_from_file_location(f"banger_agent_dropin_{name[:-3]}", path)
            if spec is None or spec.loader is None:
                raise ImportError("not a Python module")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            module.setup(agent)
        except Exception as exc:
            lines.append(f"drop-in {path} not loaded: {type(exc).__name__}: {exc}")
        else:
            lines.append(f"drop-in {path} loaded")
    return lines


def healthz() -> dict[str, Any]:
    """The body of ``GET /healthz``."""
    added = sorted({op.feature for op in EXTENSIONS.values()})
    return {
        "status": "ok",
        "agent_version": AGENT_VERSION,
        "protocol": PROTOCOL,
        "features": [*BUILTIN_FEATURES, *added],
        "hostname": socket.gethostname(),
        "uptime_seconds": round(_uptime(), 3),
    }


def _uptime() -> float:
    try:
        with open("/proc/uptime") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return time.monotonic() - STARTED


class Handler(BaseHTTPRequestHandler):
    """Serves the agent's endpoints (see docs/agent-protocol.md)."""

    protocol_version = "HTTP/1.1"
    server_version = f"banger-agent/{AGENT_VERSION}"
    timeout = REQUEST_TIMEOUT  # a client that stalls mid-request is dropped

    def do_GET(self) -> None:
        """Dispatch a GET request."""
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self.send_json(200, healthz())
        elif path == "/ports":
            self.send_json(200, {"agent_version": AGENT_VERSION, "ports": listening_ports()})
        elif ("GET", path) in EXTENSIONS:
            self.extension(EXTENSIONS[("GET", path)], path)
        else:
            self.send_json(404, {"error": "not_found", "path": path})

    def do_POST(self) -> None:
        """Dispatch a POST request (the streaming endpoints)."""
        path = self.path.split("?", 1)[0]
        routes = {"/exec": self.exec_, "/files/get": self.files_get, "/files/put": self.files_put}
        route = routes.get(path)
        if route is None and ("POST", path) in EXTENSIONS:
            self.extension(EXTENSIONS[("POST", path)], path)
            return
        if route is None:
            self.send_json(404, {"error": "not_found", "path": path})
            return
        try:
            body = self.read_json()
            if self.headers.get("Upgrade", "").lower() != UPGRADE_TOKEN:
                raise RequestError(426, f"{path} needs 'Upgrade: {UPGRADE_TOKEN}'")
            route(body)
        except RequestError as exc:
            self.send_json(exc.status, {"error": str(exc)})

    def extension(self, op: Operation, path: str) -> None:
        """Serve an operation a drop-in registered."""
        try:
            body = self.read_json() if self.command == "POST" else {}
            if op.streaming:
                if self.headers.get("Upgrade", "").lower() != UPGRADE_TOKEN:
                    raise RequestError(426, f"{path} needs 'Upgrade: {UPGRADE_TOKEN}'")
                op.handler(self, body)
                return
            reply = op.handler(body)
            if not isinstance(reply, dict):
                raise TypeError(f"{path} returned {type(reply).__name__}, not a JSON object")
            self.send_json(200, reply)
        except RequestError as exc:
            self.send_json(exc.status, {"error": str(exc)})
        except Exception as exc:
            print(f"banger-agent: {path}: {type(exc).__name__}: {exc}", flush=True)
            if not op.streaming:
                self.send_json(500, {"error": f"{path} failed: {type(exc).__name__}"})

    def read_json(self) -> dict[str, Any]:
        """The request's JSON object body."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise RequestError(400, "bad Content-Length") from None
        if length > MAX_BODY:
            raise RequestError(413, "request body too large")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            raise RequestError(400, "request body is not JSON") from None
        if not isinstance(body, dict):
            raise RequestError(400, "request body must be a JSON object")
        return body

    def switch(self, **headers: str) -> FrameWriter:
        """Answer ``101 Switching Protocols``; the connection carries frames from now on."""
        self.send_response(101)
        self.send_header("Upgrade", UPGRADE_TOKEN)
        self.send_header("Connection", "Upgrade")
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        self.connection.settimeout(None)  # a program may run (and be idle) for long
        return FrameWriter(self.wfile)

    def exec_(self, body: dict[str, Any]) -> None:
        """``POST /exec``: run a program, stream its output and exit status."""
        req = parse_exec(body)
        ExecSession(req, self.rfile, self.switch()).run()

    def files_get(self, body: dict[str, Any]) -> None:
        """``POST /files/get``: send a path as a tar stream."""
        path = body.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise RequestError(400, "path must be an absolute path")
        if not os.path.lexists(path):
            raise RequestError(404, f"{path} does not exist in the guest")
        frames = self.switch(X_Banger_Size=str(tree_size(path)))
        try:
            send_tree(path, DataWriter(frames))
        except StreamClosed:
            return
        except OSError as exc:
            frames.exit(1, error=f"reading {exc.filename or path}: {exc.strerror or exc}")
            return
        frames.exit(0)

    def files_put(self, body: dict[str, Any]) -> None:
        """``POST /files/put``: receive a tar stream into ``dest``."""
        dest = body.get("dest")
        if not isinstance(dest, str) or not dest.startswith("/"):
            raise RequestError(400, "dest must be an absolute path")
        directory, new_top = resolve_destination(dest)
        frames = self.switch()
        reader = DataReader(self.rfile)
        try:
            count = receive_tree(reader, directory, new_top)
            while not reader.done:  # the rest of the stream (tar padding)
                reader.read(65536)
        except StreamClosed:
            return
        except RequestError as exc:
            frames.exit(1, error=str(exc))
            self.drain()
            return
        except (OSError, tarfile.TarError) as exc:
            where = getattr(exc, "filename", None) or dest
            why = getattr(exc, "strerror", None) or exc
            if getattr(exc, "errno", None) == errno.ENOSPC:
                why = "no space left on the guest's disk"
            frames.exit(1, error=f"writing {where}: {why}; nothing of this copy was kept")
            self.drain()
            return
        frames.exit(0, entries=count)

    def drain(self, seconds: float = 5.0) -> None:
        """After an early error: let the client see it before we stop reading its data."""
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(seconds)
            while self.rfile.read(65536):
                pass

    def send_json(self, status: int, body: dict[str, Any]) -> None:
        """Send ``body`` as a JSON response with a Content-Length."""
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def address_string(self) -> str:
        """Client address for logs (Unix and vsock peers have no host name)."""
        return str(self.client_address or "peer")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the agent does not log each request."""


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Threaded HTTP server on a Unix socket (the simulator's vsock)."""

    daemon_threads = True
    request_queue_size = 128  # bursts of connections must not be refused


class VsockServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """Threaded HTTP server on AF_VSOCK."""

    daemon_threads = True
    allow_reuse_address = False
    request_queue_size = 128
    address_family = getattr(socket, "AF_VSOCK", -1)


def make_server(port: int, vsock_dir: str | None = None) -> socketserver.BaseServer:
    """Create the listening server: Unix socket under ``vsock_dir`` or AF_VSOCK."""
    if vsock_dir:
        path = os.path.join(vsock_dir, f"{port}.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return UnixServer(path, Handler)
    if not hasattr(socket, "AF_VSOCK"):
        raise OSError("this Python has no AF_VSOCK")
    return VsockServer((socket.VMADDR_CID_ANY, port), Handler)


# --------------------------------------------------------------------------
# virtio-serial: connections multiplexed over one port (banger-fcqemu)

SERIAL_PORT_NAME = "banger.agent"
SERIAL_MAGIC = b"BGRM"
SERIAL_HEADER = struct.Struct(">4sBII")
SERIAL_MAX_PAYLOAD = 16384
SYNC, HELLO, OPEN, OPENED, REFUSED, DATA, EOF, CLOSE = range(1, 9)
SERIAL_WAIT_SECONDS = 120.0


def find_serial_port(
    name: str = SERIAL_PORT_NAME, dev: str = "/dev", sysfs: str = "/sys/class/virtio-ports"
) -> str | None:
    """The device of the virtio-serial port ``name``: udev's symlink, else found in sysfs."""
    link = os.path.join(dev, "virtio-ports", name)
    if os.path.exists(link):
        return link
    try:
        entries = sorted(os.listdir(sysfs))
    except OSError:
        return None
    for entry in entries:
        try:
            with open(os.path.join(sysfs, entry, "name")) as f:
                if f.read().strip() == name:
                    node = os.path.join(dev, entry)
                    return node if os.path.exists(node) else None
        except OSError:
            continue
    return None


class FrameReader:
    """Split the port's byte stream into frames, skipping garbage up to the next magic."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """Add ``data``; return complete frames as ``(type, channel, payload)``."""
        self.buffer += data
        frames: list[tuple[int, int, bytes]] = []
        while True:
            start = self.buffer.find(SERIAL_MAGIC)
            if start < 0:
                self.buffer = self.buffer[-(len(SERIAL_MAGIC) - 1) :]
                return frames
            self.buffer = self.buffer[start:]
            if len(self.buffer) < SERIAL_HEADER.size:
                return frames
            _magic, kind, channel, length = SERIAL_HEADER.unpack_from(self.buffer)
            if length > SERIAL_MAX_PAYLOAD or not SYNC <= kind <= CLOSE:
                self.buffer = self.buffer[1:]
                continue
            end = SERIAL_HEADER.size + length
            if len(self.buffer) < end:
                return frames
            frames.append((kind, channel, self.buffer[SERIAL_HEADER.size : end]))
            self.buffer = self.buffer[end:]


class SerialMux:
    """Serves the agent's HTTP API to connections multiplexed over a virtio-serial port.

    The host opens a channel per hybrid-vsock connection (``OPEN`` + port);
    each accepted channel gets a socket pair whose one end is handed to the
    HTTP handler, the other pumped to and from ``DATA`` frames.
    """

    def __init__(self, path: str, port: int) -> None:
        self.path = path
        self.port = port
        self.fd = -1
        self.write_lock = threading.Lock()
        self.lock = threading.Lock()
        self.channels: dict[int, socket.socket] = {}
        self.stopped = False

    def send(self, kind: int, channel: int = 0, payload: bytes = b"") -> None:
        """Write one frame (one write: the port takes up to 32 KiB atomically)."""
        frame = SERIAL_HEADER.pack(SERIAL_MAGIC, kind, channel, len(payload)) + payload
        with self.write_lock:
            view = memoryview(frame)
            while view:
                written = os.write(self.fd, view)
                view = view[written:]

    def serve_forever(self) -> None:
        """Open the port, announce the agent and serve channels until the port fails."""
        self.serve_fd(os.open(self.path, os.O_RDWR | os.O_CLOEXEC))

    def serve_fd(self, fd: int) -> None:
        """Serve on an open port (or any byte stream: tests pass a socket's fd)."""
        self.fd = fd
        self.send(HELLO)
        reader = FrameReader()
        while not self.stopped:
            try:
                data = os.read(self.fd, 65536)
                if not data:
                    time.sleep(0.2)  # the host side is not attached (yet): nothing to read
                    continue
                for kind, channel, payload in reader.feed(data):
                    self.on_frame(kind, channel, payload)
            except InterruptedError:
                continue
            except OSError:
                if self.stopped:
                    return
                raise

    def on_frame(self, kind: int, channel: int, payload: bytes) -> None:
        """Act on one frame from the host."""
        if kind == SYNC:
            # The host (re)attached: channels opened before are stale. Echo its nonce.
            self.reset()
            self.send(HELLO, 0, payload[:4])
            return
        if kind == OPEN:
            port = struct.unpack(">I", payload)[0] if len(payload) == 4 else -1
            if port != self.port:
                self.send(REFUSED, channel)
                return
            mine, theirs = socket.socketpair()
            with self.lock:
                old = self.channels.pop(channel, None)
                self.channels[channel] = mine
            if old is not None:
                old.close()
            threading.Thread(target=_serve_http, args=(theirs,), daemon=True).start()
            self.send(OPENED, channel)
            threading.Thread(target=self.pump, args=(channel, mine), daemon=True).start()
            return
        with self.lock:
            sock = self.channels.get(channel)
        if sock is None:
            if kind in (DATA, EOF):
                self.send(CLOSE, channel)
            return
        if kind == DATA:
            try:
                sock.sendall(payload)
            except OSError:
                self.drop(channel)
                self.send(CLOSE, channel)
        elif kind == EOF:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        elif kind == CLOSE:
            self.drop(channel)

    def pump(self, channel: int, sock: socket.socket) -> None:
        """Carry the handler's output to the host as DATA frames, then EOF."""
        while True:
            try:
                data = sock.recv(SERIAL_MAX_PAYLOAD)
            except OSError:
                break
            if not data:
                break
            try:
                self.send(DATA, channel, data)
            except OSError:
                break
        with self.lock:
            current = self.channels.get(channel)
        if current is sock:
            with contextlib.suppress(OSError):
                self.send(EOF, channel)
            self.drop(channel)

    def drop(self, channel: int) -> None:
        """Forget ``channel`` and close our end of it."""
        with self.lock:
            sock = self.channels.pop(channel, None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def reset(self) -> None:
        """Forget every channel (the host re-attached)."""
        with self.lock:
            ids = list(self.channels)
        for channel in ids:
            self.drop(channel)


def _serve_http(sock: socket.socket) -> None:
    try:
        Handler(sock, ("virtio-serial", 0), None)  # type: ignore[arg-type]
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def serve_serial(port: int, wait: float = SERIAL_WAIT_SECONDS) -> None:
    """Find the ``banger.agent`` port (loading virtio_console once if needed) and serve it.

    Returns when no port shows up within ``wait`` seconds (a VM without one).
    """
    deadline = time.monotonic() + wait
    loaded = False
    while True:
        path = find_serial_port()
        if path is not None:
            break
        if not loaded and not os.path.isdir("/sys/class/virtio-ports"):
            loaded = True
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(["modprobe", "-q", "virtio_console"], timeout=30, check=False)
            continue
        if time.monotonic() >= deadline:
            return
        time.sleep(1.0)
    print(f"banger-agent: serving {path} ({SERIAL_PORT_NAME})", flush=True)
    while True:
        try:
            SerialMux(path, port).serve_forever()
        except OSError as exc:
            print(f"banger-agent: {path}: {exc}; retrying", flush=True)
            time.sleep(1.0)


def configured_port(path: str = AGENT_CONFIG) -> int:
    """Port from the boot program's ``agent.json``, else the default."""
    try:
        with open(path) as f:
            return int(json.load(f).get("vsock_port") or DEFAULT_PORT)
    except (OSError, ValueError, AttributeError):
        return DEFAULT_PORT


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``banger-agent [--port N] [--config FILE]``."""
    parser = argparse.ArgumentParser(prog="banger-agent")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--config", default=AGENT_CONFIG)
    parser.add_argument("--dropin-dir", default=DROPIN_DIR, help="where drop-ins are loaded from")
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=REQUEST_TIMEOUT,
        help="seconds a client may take to send a request",
    )
    args = parser.parse_args(argv)
    Handler.timeout = args.request_timeout
    for line in load_dropins(args.dropin_dir):
        print(f"banger-agent: {line}", flush=True)
    port = args.port if args.port is not None else configured_port(args.config)
    vsock_dir = os.environ.get("BANGER_VSOCK_DIR") or None
    where = f"{vsock_dir}/{port}.sock" if vsock_dir else f"vsock port {port}"
    serial = None
    if not vsock_dir:
        # banger-fcqemu's bridge (no vhost-vsock on the host): a virtio-serial port.
        serial = threading.Thread(target=serve_serial, args=(port,), daemon=True)
        serial.start()
    try:
        server: socketserver.BaseServer | None = make_server(port, vsock_dir)
    except OSError as exc:
        if serial is None:
            raise
        print(f"banger-agent: no {where} ({exc}); serial port only", flush=True)
        server = None

    def _stop(_signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    # Programs run by /exec must feel Ctrl-C even if whoever started us ignored it.
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)
    try:
        if server is not None:
            print(f"banger-agent: listening on {where}", flush=True)
            server.serve_forever()
        elif serial is not None:
            serial.join()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        if server is not None:
            server.server_close()
        if vsock_dir:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(vsock_dir, f"{port}.sock"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
