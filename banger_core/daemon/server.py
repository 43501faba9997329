"""The daemon's RPC server: a Unix socket speaking line-delimited JSON-RPC.

Each connection may carry several requests; each runs as its own task and is
cancelled when the client disconnects. Sync handlers run in a thread pool and
get a ``call.cancelled`` event to poll. Peer credentials are checked on
every connection (``SO_PEERCRED``).
"""

from __future__ import annotations

import asyncio
import grp
import inspect
import json
import os
import signal
import socket
import struct
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from banger_core.errors import BangerError, ConflictError, NotFoundError, ValidationError
from banger_core.rpc import protocol

Handler = Callable[[dict[str, Any], "RPCCall"], Any]


@dataclass(eq=False)
class RPCCall:
    """What a handler knows about the request it serves."""

    method: str
    peer_pid: int
    peer_uid: int
    peer_gid: int
    cancelled: threading.Event = field(default_factory=threading.Event)
    server: Any = field(default=None, repr=False)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Call another method of this daemon (core or plugin) as the same peer.

        For sync handlers (they run in a worker thread); lets one plugin use
        what another plugin or the core serves without importing it.
        """
        if self.server is None:
            raise NotFoundError(f"unknown method {method!r}")
        return self.server.call_method(method, dict(params or {}), self)


@dataclass
class Method:
    """A registered RPC method and who provided it."""

    name: str
    handler: Handler
    owner: str
    early: bool = False  # served before start-up completes (status, stop)


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """Return ``(pid, uid, gid)`` of the process on the other end of ``sock``."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


class RPCServer:
    """Serves registered methods on a Unix socket until :meth:`stop`."""

    def __init__(self, socket_path: os.PathLike[str] | str, *, group: str = "") -> None:
        self.socket_path = str(socket_path)
        self.group = group
        self.methods: dict[str, Method] = {}
        self.executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="rpc")
        self._server: asyncio.base_events.Server | None = None
        self._stopped: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        self._group_gid = grp.getgrnam(group).gr_gid if group else None

    # -- registration ----------------------------------------------------------
    def register(self, name: str, handler: Handler, owner: str = "core", *,
                 early: bool = False) -> None:
        """Add a method; a name already taken is refused naming both owners.

        Requests wait until :meth:`mark_ready` (services started) unless the
        method is ``early``.
        """
        if not name or "." not in name:
            raise ValidationError(f"RPC method name {name!r} must look like 'area.verb'")
        if name in self.methods:
            raise ConflictError(
                f"RPC method {name!r} from {owner} clashes with the one from "
                f"{self.methods[name].owner}")
        self.methods[name] = Method(name, handler, owner, early)

    def call_method(self, name: str, params: dict[str, Any], parent: RPCCall) -> Any:
        """Run method ``name`` for a handler already running in a worker thread."""
        method = self.methods.get(name)
        if method is None:
            raise NotFoundError(f"unknown method {name!r}")
        sub = RPCCall(name, parent.peer_pid, parent.peer_uid, parent.peer_gid,
                      parent.cancelled, self)
        if inspect.iscoroutinefunction(method.handler):
            assert self._loop is not None
            return asyncio.run_coroutine_threadsafe(method.handler(params, sub),
                                                    self._loop).result()
        result = method.handler(params, sub)
        if isinstance(result, protocol.FDResult):
            os.close(result.fd)  # only a client can receive a descriptor
            return result.result
        return result

    # -- access control ------------------------------------------------------
    def allowed(self, uid: int, gid: int) -> bool:
        """Whether a peer with these credentials may use the daemon."""
        if uid in (0, os.geteuid()):
            return True
        if self._group_gid is None:
            return False
        if gid == self._group_gid:
            return True
        try:
            import pwd

            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            return False
        return user in grp.getgrgid(self._group_gid).gr_mem

    # -- serving -----------------------------------------------------------------
    async def start(self, *, ready: bool = True) -> None:
        """Bind the socket (private permissions) and start accepting.

        :param ready: serve every method at once; with ``False`` only
            ``early`` methods run until :meth:`mark_ready`.
        """
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._ready = asyncio.Event()
        if ready:
            self._ready.set()
        old_umask = os.umask(0o177 if self._group_gid is None else 0o117)
        try:
            self._server = await asyncio.start_unix_server(
                self._handle, path=self.socket_path, limit=protocol.MAX_LINE)
        finally:
            os.umask(old_umask)
        if self._group_gid is not None:
            os.chown(self.socket_path, -1, self._group_gid)
            os.chmod(self.socket_path, 0o660)
        else:
            os.chmod(self.socket_path, 0o600)

    async def wait_stopped(self) -> None:
        """Block until :meth:`stop` is called."""
        assert self._stopped is not None
        await self._stopped.wait()

    def mark_ready(self) -> None:
        """Let queued and future requests run (safe to call from any thread)."""
        if self._loop is None or self._ready is None:
            return
        self._loop.call_soon_threadsafe(self._ready.set)

    @property
    def ready(self) -> bool:
        """Whether :meth:`mark_ready` took effect."""
        return self._ready is not None and self._ready.is_set()

    def stop(self) -> None:
        """Stop serving (safe to call from any thread)."""
        if self._loop is None or self._stopped is None:
            return
        self._loop.call_soon_threadsafe(self._stopped.set)

    async def close(self) -> None:
        """Close the listening socket and remove its file."""
        if self._server is not None:
            self._server.close()
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        pid, uid, gid = peer_credentials(sock)
        if not self.allowed(uid, gid):
            logger.warning("refused connection from pid {} uid {}", pid, uid)
            writer.write(protocol.error(None, "denied", f"uid {uid} may not use bangerd"))
            await writer.drain()
            writer.close()
            return
        tasks: set[asyncio.Task] = set()
        calls: set[RPCCall] = set()
        write_lock = asyncio.Lock()
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ConnectionResetError, asyncio.LimitOverrunError, ValueError):
                    break
                if not line:
                    break
                task = asyncio.create_task(
                    self._serve_one(line, pid, uid, gid, writer, write_lock, calls))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            # The client went away: cancel what it was waiting for.
            for call in list(calls):
                call.cancelled.set()
            for task in list(tasks):
                task.cancel()
            writer.close()

    async def _serve_one(self, line: bytes, pid: int, uid: int, gid: int,
                         writer: asyncio.StreamWriter, write_lock: asyncio.Lock,
                         calls: set[RPCCall]) -> None:
        req_id: Any = None
        fd: int | None = None
        try:
            msg = json.loads(line)
            if not isinstance(msg, dict):
                raise ValidationError("request must be a JSON object")
            req_id = msg.get("id")
            method_name = msg.get("method")
            params = msg.get("params") or {}
            if not isinstance(method_name, str):
                raise ValidationError("request has no method")
            if not isinstance(params, dict):
                raise ValidationError(f"params of {method_name} must be a JSON object")
            method = self.methods.get(method_name)
            if method is None:
                raise NotFoundError(f"unknown method {method_name!r}")
            if not method.early and self._ready is not None and not self._ready.is_set():
                await self._ready.wait()
            call = RPCCall(method_name, pid, uid, gid, server=self)
            calls.add(call)
            try:
                result = await self._invoke(method, params, call)
            finally:
                calls.discard(call)
            if isinstance(result, protocol.FDResult):
                fd, result = result.fd, result.result
            reply = protocol.ok(req_id, result)
        except json.JSONDecodeError as exc:
            reply = protocol.error(req_id, "invalid", f"request is not valid JSON: {exc}")
        except BangerError as exc:
            reply = protocol.error(req_id, exc.code, str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("RPC handler crashed")
            reply = protocol.error(req_id, "error", f"internal error: {type(exc).__name__}: {exc}")
        async with write_lock:
            try:
                if fd is None:
                    writer.write(reply)
                    await writer.drain()
                else:
                    await _send_with_fd(writer, reply, fd)
            except (ConnectionError, RuntimeError, OSError):
                pass
            finally:
                if fd is not None:
                    os.close(fd)

    async def _invoke(self, method: Method, params: dict[str, Any], call: RPCCall) -> Any:
        handler = method.handler
        if inspect.iscoroutinefunction(handler):
            return await handler(params, call)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, handler, params, call)
        try:
            return await future
        except asyncio.CancelledError:
            call.cancelled.set()
            raise


async def _send_with_fd(writer: asyncio.StreamWriter, data: bytes, fd: int) -> None:
    """Write ``data`` with ``fd`` attached (SCM_RIGHTS) once the transport's buffer is empty."""
    await writer.drain()
    while writer.transport.get_write_buffer_size():
        await asyncio.sleep(0.001)
    transport_sock = writer.get_extra_info("socket")
    raw = socket.socket(fileno=os.dup(transport_sock.fileno()))
    try:
        fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))]
        sent = 0
        while sent < len(data):
            try:
                sent += raw.sendmsg([data[sent:]], fds if sent == 0 else [])
            except BlockingIOError:
                await asyncio.sleep(0.001)
    finally:
        raw.close()  # our duplicate only; the connection stays open


def install_signal_handlers(stop: Callable[[], None]) -> None:
    """Make SIGTERM and SIGINT stop the daemon cleanly."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
