"""The daemon's RPC server: a Unix socket speaking line-delimited JSON-RPC.

Each connection may carry several requests; each runs as its own task and is
cancelled when the client disconnects. Sync handlers run in a thread pool and
get a ``call.cancelled`` event to poll. Peer credentials are checked on
every connection (``SO_PEERCRED``).

Fairness: a connection has at most :data:`MAX_IN_FLIGHT` requests in
progress (the server stops reading from a client that does not read its
replies), a request line longer than ``protocol.MAX_LINE`` is answered with
an error before the connection closes, and ``read`` methods (listings,
status) run in a pool of their own so they never queue behind lock waits.
Parameters are checked against the schema a handler declares
(:mod:`banger_core.rpc.schema`) before it runs.
"""

from __future__ import annotations

import asyncio
import grp
import inspect
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

from banger_core.errors import (
    BangerError,
    CancelledError,
    ConflictError,
    UnknownMethodError,
    ValidationError,
)
from banger_core.rpc import protocol
from banger_core.rpc.access import Rule
from banger_core.rpc.protocol import PassFd
from banger_core.rpc.schema import Schema, schema_of

Handler = Callable[[dict[str, Any], "RPCCall"], Any]
ErrorTranslator = Callable[[BaseException], "BangerError | None"]

MAX_IN_FLIGHT = 32
"""Requests one connection may have in progress before the server stops reading it."""
MAX_CONNECTIONS = 512
"""Connections open at once; more wait in the kernel's listen queue."""
ACCEPT_BATCH = 16
"""Connections accepted per turn of the event loop, at most."""
LISTEN_BACKLOG = 512
"""Connections the kernel queues for the daemon before a client's connect waits."""
REFUSAL_DRAIN_SECONDS = 1.0
"""How long a refused connection is read (and discarded) after the refusal is sent."""


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
            raise UnknownMethodError(f"unknown method {method!r}")
        return self.server.call_method(method, dict(params or {}), self)


@dataclass
class Method:
    """A registered RPC method and who provided it."""

    name: str
    handler: Handler
    owner: str
    early: bool = False  # served before start-up completes (status, stop)
    read: bool = False  # a quick read: runs in the read pool, never behind lock waits
    schema: Schema | None = None
    access: Rule | None = None  # who may call it (banger_core.daemon.policy)


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
        self.read_executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="rpc-read")
        self.error_translators: list[ErrorTranslator] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._calls: set[RPCCall] = set()
        self._connections: set[asyncio.StreamWriter] = set()
        self._stopping = False
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task | None = None
        self._accepted: set[asyncio.Task] = set()  # connection tasks (kept referenced)
        self._stopped: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        self._group_gid = grp.getgrnam(group).gr_gid if group else None
        self.policy: Any = None
        """A :class:`banger_core.daemon.policy.Policy`: checks every call's rule (the daemon
        always sets one; a bare server in a unit test serves every method)."""

    # -- registration ----------------------------------------------------------
    def register(
        self,
        name: str,
        handler: Handler,
        owner: str = "core",
        *,
        early: bool = False,
        read: bool = False,
        access: Rule | None = None,
    ) -> None:
        """Add a method; a name already taken is refused naming both owners.

        Requests wait until :meth:`mark_ready` (services started) unless the
        method is ``early``. ``read`` methods (quick, lock-free reads) run in
        a pool of their own. A schema declared with ``@rpc_params`` on the
        handler is checked before every call. ``access`` is who may call it
        (with a policy set, a method without one is refused to everyone).
        """
        if not name or "." not in name:
            raise ValidationError(f"RPC method name {name!r} must look like 'area.verb'")
        if name in self.methods:
            raise ConflictError(
                f"RPC method {name!r} from {owner} clashes with the one from "
                f"{self.methods[name].owner}"
            )
        self.methods[name] = Method(name, handler, owner, early, read, schema_of(handler), access)

    def call_method(self, name: str, params: dict[str, Any], parent: RPCCall) -> Any:
        """Run method ``name`` for a handler already running in a worker thread."""
        method = self.methods.get(name)
        if method is None:
            raise UnknownMethodError(f"unknown method {name!r}")
        if method.schema is not None:
            params = method.schema.validate(name, params)
        self.authorize(method, params, parent.peer_uid)
        sub = RPCCall(
            name, parent.peer_pid, parent.peer_uid, parent.peer_gid, parent.cancelled, self
        )
        if inspect.iscoroutinefunction(method.handler):
            assert self._loop is not None
            return asyncio.run_coroutine_threadsafe(
                method.handler(params, sub), self._loop
            ).result()
        result = method.handler(params, sub)
        if isinstance(result, PassFd):
            os.close(result.fd)  # only a client can receive a descriptor
            return result.result
        return result

    # -- access control ------------------------------------------------------
    def authorize(self, method: Method, params: dict[str, Any], uid: int) -> None:
        """Raise :class:`~banger_core.errors.ForbiddenError` when ``uid`` may not make
        this call (the one place every request, and every call between handlers, passes)."""
        if self.policy is not None:
            self.policy.check(method.name, method.access, params, uid)

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
            self._listener = self._listen()
        finally:
            os.umask(old_umask)
        self._accepting = asyncio.create_task(self._accept_loop(self._listener))
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

    @property
    def stopping(self) -> bool:
        """Whether :meth:`close` has begun: cancellable work is being rolled back."""
        return self._stopping

    async def close(
        self,
        *,
        grace: float = 120.0,
        before_wait: Callable[[], None] | None = None,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        """Stop accepting, let requests in progress finish, then close.

        Calls in progress are asked to cancel (creates and starts roll back;
        stops and deletes finish); their replies still reach their clients.
        ``before_wait`` runs first (the daemon cancels its operations there);
        the server then waits while ``busy()`` (operations still rolling back)
        and connections get a moment to collect the final status of their work.
        """
        self._stopping = True
        if self._accepting is not None:
            self._accepting.cancel()
        if self._listener is not None:
            self._listener.close()
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        for call in list(self._calls):
            call.cancelled.set()
        if before_wait is not None:
            before_wait()
        deadline = asyncio.get_running_loop().time() + grace
        while (self._tasks or busy()) and asyncio.get_running_loop().time() < deadline:
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=0.2)
            else:
                await asyncio.sleep(0.05)
        linger = asyncio.get_running_loop().time() + 3.0
        while self._connections and asyncio.get_running_loop().time() < linger:
            await asyncio.sleep(0.05)
        for writer in list(self._connections):
            writer.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.read_executor.shutdown(wait=False, cancel_futures=True)

    def _listen(self) -> socket.socket:
        """The listening socket (a stale socket file left by a dead daemon is replaced)."""
        import stat

        try:
            if stat.S_ISSOCK(os.stat(self.socket_path).st_mode):
                os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(self.socket_path)
            listener.listen(LISTEN_BACKLOG)
            listener.setblocking(False)
        except BaseException:
            listener.close()
            raise
        return listener

    async def _accept_loop(self, listener: socket.socket) -> None:
        """Accept connections, a few per turn of the event loop.

        asyncio's own server accepts up to a hundred connections per turn and
        starts a task for each; clients that connect and close in a loop then
        keep hundreds of tasks runnable, and every step of a real request
        (read, check, run, reply) waits behind all of them: ``vm list`` took
        seconds (issue 14). Here a turn accepts at most :data:`ACCEPT_BATCH`
        connections, so connections being served stay ahead of ones that just
        arrived; one whose client already hung up is closed at once (no task);
        and at most :data:`MAX_CONNECTIONS` are open at once (more wait in the
        kernel's queue), so clients cannot use up the daemon's descriptors
        (``bench/connection_churn.py`` measures it).
        """
        loop = asyncio.get_running_loop()
        room = asyncio.Event()
        room.set()
        while True:
            await room.wait()
            try:
                first, _addr = await loop.sock_accept(listener)
            except OSError as exc:
                if listener.fileno() < 0:
                    return  # closed by close()
                logger.warning("accepting a connection failed: {}", exc)
                await asyncio.sleep(0.1)  # out of descriptors: let connections finish
                continue
            self._take(first, room)
            # A few more that are already queued, then everyone else's turn
            # (sock_accept returns without yielding while connections are queued).
            for _ in range(ACCEPT_BATCH - 1):
                if not room.is_set():
                    break
                try:
                    fd, _addr = listener._accept()  # type: ignore[attr-defined]
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # reported by sock_accept on the next turn
                self._take(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fd), room)
            await asyncio.sleep(0)

    def _take(self, conn: socket.socket, room: asyncio.Event) -> None:
        """Serve an accepted connection; one whose client already left is just closed.

        A client that connected and hung up without a byte costs one ``recv``
        instead of a transport, a task and several turns of the loop.
        """
        try:
            if conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                conn.close()
                return
        except (BlockingIOError, InterruptedError):
            pass  # connected, nothing sent yet: a live client
        except OSError:
            conn.close()
            return
        task = asyncio.create_task(self._serve_connection(conn))
        self._accepted.add(task)
        if len(self._accepted) >= MAX_CONNECTIONS:
            room.clear()

        def done(t: asyncio.Task) -> None:
            self._accepted.discard(t)
            if len(self._accepted) < MAX_CONNECTIONS:
                room.set()

        task.add_done_callback(done)

    async def _serve_connection(self, conn: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_unix_connection(sock=conn, limit=protocol.MAX_LINE)
        except OSError:
            conn.close()
            return
        await self._handle(reader, writer)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        pid, uid, gid = peer_credentials(sock)
        if not self.allowed(uid, gid):
            logger.warning("refused connection from pid {} uid {}", pid, uid)
            await self._refuse(reader, writer, uid)
            return
        tasks: set[asyncio.Task[None]] = set()
        calls: set[RPCCall] = set()
        write_lock = asyncio.Lock()
        slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._connections.add(writer)
        try:
            while True:
                # A client that does not read its replies keeps its slots busy:
                # we stop reading it (its own problem), everyone else is served.
                await slots.acquire()
                try:
                    line = await reader.readline()
                except ValueError:  # longer than MAX_LINE
                    slots.release()
                    await self._write(
                        writer,
                        write_lock,
                        protocol.error(
                            None,
                            "invalid",
                            f"request too large: a request line may have at "
                            f"most {protocol.MAX_LINE} bytes; closing the connection",
                        ),
                    )
                    break
                except (ConnectionError, asyncio.IncompleteReadError):
                    slots.release()
                    break
                if not line:
                    slots.release()
                    break
                task = asyncio.create_task(
                    self._serve_one(line, pid, uid, gid, writer, write_lock, calls)
                )
                tasks.add(task)
                self._tasks.add(task)
                task.add_done_callback(tasks.discard)
                task.add_done_callback(self._tasks.discard)
                task.add_done_callback(lambda _t: slots.release())
        finally:
            if not self._stopping:
                # The client went away: cancel what it was waiting for.
                for call in list(calls):
                    call.cancelled.set()
                for task in list(tasks):
                    task.cancel()
            elif tasks:
                await asyncio.wait(list(tasks))
            self._connections.discard(writer)
            writer.close()

    async def _refuse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, uid: int
    ) -> None:
        """Send the refusal, shut our sending side, and read briefly so a client that
        wrote first still gets the refusal instead of a broken pipe."""
        task = asyncio.current_task()
        if task is not None:  # close() waits for it like for a request
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            writer.write(protocol.error(None, "denied", f"uid {uid} may not use bangerd"))
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + REFUSAL_DRAIN_SECONDS
            while (left := deadline - loop.time()) > 0:
                chunk = await asyncio.wait_for(reader.read(65536), left)
                if not chunk:
                    break
        except (ConnectionError, TimeoutError, ValueError):
            pass
        finally:
            writer.close()

    async def _write(
        self, writer: asyncio.StreamWriter, write_lock: asyncio.Lock, reply: bytes
    ) -> None:
        async with write_lock:
            try:
                writer.write(reply)
                await writer.drain()
            except (ConnectionError, RuntimeError):
                pass

    async def _serve_one(
        self,
        line: bytes,
        pid: int,
        uid: int,
        gid: int,
        writer: asyncio.StreamWriter,
        write_lock: asyncio.Lock,
        calls: set[RPCCall],
    ) -> None:
        req_id: Any = None
        method_name = "?"
        try:
            msg = protocol.decode_request(line)
            req_id = msg.get("id")
            method_name = msg["method"]
            method = self.methods.get(method_name)
            if method is None:
                raise UnknownMethodError(f"unknown method {method_name[:80]!r}")
            params = msg.get("params")
            params = {} if params is None else params
            if method.schema is not None:
                params = method.schema.validate(method_name, params)
            elif not isinstance(params, dict):
                raise ValidationError(f"params of {method_name} must be a JSON object")
            if self.policy is not None and self.policy.reads_store(method.access, uid):
                # Owner checks read the store: off the event loop.
                await asyncio.get_running_loop().run_in_executor(
                    self.read_executor, self.authorize, method, params, uid
                )
            else:
                self.authorize(method, params, uid)
            if self._stopping and not method.early:
                raise ConflictError("bangerd is stopping; try again once it runs")
            if not method.early and self._ready is not None and not self._ready.is_set():
                await self._ready.wait()
            call = RPCCall(method_name, pid, uid, gid, server=self)
            calls.add(call)
            self._calls.add(call)
            try:
                result = await self._invoke(method, params, call)
            finally:
                calls.discard(call)
                self._calls.discard(call)
            if isinstance(result, PassFd):
                await self._write_fd(
                    writer, write_lock, protocol.ok(req_id, result.result), result.fd
                )
                return
            reply = protocol.ok(req_id, result)
        except CancelledError as exc:
            message = str(exc)
            if self._stopping:
                message = (
                    f"{method_name} was cancelled because the daemon is stopping; "
                    f"it was rolled back ({exc})"
                )
            reply = protocol.error(req_id, exc.code, message)
        except BangerError as exc:
            reply = protocol.error(req_id, exc.code, str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reply = self._unexpected(req_id, method_name, exc)
        await self._write(writer, write_lock, reply)

    async def _write_fd(
        self, writer: asyncio.StreamWriter, write_lock: asyncio.Lock, reply: bytes, fd: int
    ) -> None:
        """Send ``reply`` with ``fd`` attached, after everything queued before it."""
        async with write_lock:
            try:
                transport = writer.transport
                while transport.get_write_buffer_size():
                    await writer.drain()
                    await asyncio.sleep(0.01)
                raw = writer.get_extra_info("socket")
                out = socket.socket(fileno=os.dup(raw.fileno()))
                try:
                    sent = 0
                    deadline = asyncio.get_running_loop().time() + 10
                    while sent < len(reply):
                        try:
                            if sent == 0:
                                sent = socket.send_fds(out, [reply], [fd])
                            else:
                                sent += out.send(reply[sent:])
                        except BlockingIOError:
                            if asyncio.get_running_loop().time() > deadline:
                                raise
                            await asyncio.sleep(0.01)
                finally:
                    out.close()
            except (OSError, RuntimeError) as exc:
                logger.warning("passing a descriptor failed: {}", exc)
            finally:
                os.close(fd)

    def _unexpected(self, req_id: Any, method_name: str, exc: Exception) -> bytes:
        """A reply for an exception that is not a :class:`BangerError`."""
        for translate in self.error_translators:
            try:
                known = translate(exc)
            except Exception:
                known = None
            if known is not None:
                logger.error("{} failed: {}", method_name, known)
                return protocol.error(req_id, known.code, str(known))
        logger.opt(exception=exc).error("RPC handler {} crashed", method_name)
        method = self.methods.get(method_name)
        if method is not None and method.owner != "core":
            return protocol.error(
                req_id,
                "plugin",
                f"{method_name} (from {method.owner}) failed: "
                f"{type(exc).__name__}: {exc}; this is a bug in the plugin, see the daemon log",
            )
        return protocol.error(
            req_id, "internal", f"internal error in {method_name}: {type(exc).__name__}: {exc}"
        )

    async def _invoke(self, method: Method, params: dict[str, Any], call: RPCCall) -> Any:
        handler = method.handler
        if inspect.iscoroutinefunction(handler):
            return await handler(params, call)
        loop = asyncio.get_running_loop()
        pool = self.read_executor if method.read else self.executor
        future = loop.run_in_executor(pool, handler, params, call)
        try:
            return await future
        except asyncio.CancelledError:
            call.cancelled.set()
            raise


def install_signal_handlers(stop: Callable[[], None]) -> None:
    """Make SIGTERM and SIGINT stop the daemon cleanly."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
