"""The DNS server: asyncio listeners (UDP and TCP) on a thread of their own.

Each listener answers from a :class:`~banger_dns.zone.Zone` in memory. A
listener with ``recursion`` (the one on the bridge gateway, for guests)
forwards names outside ``vm.`` to upstream resolvers; the host-facing one
refuses them. The event loop runs in its own thread, so the daemon's RPC
loop and the DNS answers never wait on each other.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from dnslib import RCODE, DNSRecord

from banger_dns.zone import MAX_QUERY, Zone

log = logging.getLogger("banger.plugins.dns")

FORWARD_TIMEOUT = 2.0  # seconds per upstream
MAX_FORWARDS = 256  # queries being forwarded at once; more are dropped
MAX_TCP_CLIENTS = 64
TCP_IDLE = 10.0  # seconds a TCP client may stay silent
MALFORMED_LOG_EVERY = 60.0
"""Seconds between two log lines about malformed packets (each line gives the count)."""


class MalformedPackets:
    """Counts malformed packets; logs one DEBUG line per interval, never one per packet.

    Guests are hostile: a guest can send a million bad packets, and each must
    cost the host a counter increment, not a log line (a traceback per
    packet once filled the disk).
    """

    def __init__(self, every: float = MALFORMED_LOG_EVERY, clock: Any = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self.total = 0
        self.since_log = 0
        self.last_log: float | None = None

    def add(self, peer: Any, why: str) -> None:
        """Count one malformed packet from ``peer``; maybe log a summary line."""
        self.total += 1
        self.since_log += 1
        now = self.clock()
        if self.last_log is None or now - self.last_log >= self.every:
            log.debug(
                "DNS: %d malformed packet(s) since the last report (%d in all); latest from %s: %s",
                self.since_log,
                self.total,
                peer,
                why[:200],
            )
            self.last_log = now
            self.since_log = 0


@dataclass
class Listener:
    """One address the server listens on (UDP and TCP)."""

    host: str
    port: int
    recursion: bool = False
    error: str = ""
    bound: list[str] = field(default_factory=list)

    def describe(self) -> list[str]:
        """``["udp 127.0.0.1:42069", ...]`` or the bind error."""
        if self.error:
            return [f"{self.host}:{self.port} failed: {self.error}"]
        role = " (guests, forwarding)" if self.recursion else ""
        return [f"{proto} {self.host}:{self.port}{role}" for proto in self.bound]


class DNSServer:
    """Serves ``zone`` on ``listeners`` from a background event loop."""

    def __init__(
        self, zone: Zone, listeners: list[Listener], upstreams: list[tuple[str, int]] | None = None
    ) -> None:
        self.zone = zone
        self.listeners = listeners
        self.upstreams = list(upstreams or [])
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closers: list[Any] = []
        self._forwarding = 0
        self._tcp_clients = 0
        self.stats = {"answered": 0, "forwarded": 0, "dropped": 0, "malformed": 0}
        self.malformed = MalformedPackets()

    # -- life cycle ---------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        """Bind every listener and serve in a thread; returns once bound (or failed)."""
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="banger-dns", daemon=True
        )
        self._thread.start()
        ready.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Close every listener and end the thread (safe when never started)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._loop = self._thread = None

    def describe(self) -> dict[str, Any]:
        """For ``banger daemon status``."""
        return {
            "listeners": [line for lst in self.listeners for line in lst.describe()],
            "records": len(self.zone.records()),
            "upstreams": [f"{h}:{p}" for h, p in self.upstreams] or ["(none)"],
            "malformed_packets": self.malformed.total,
        }

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            for listener in self.listeners:
                loop.run_until_complete(self._open(listener))
        finally:
            ready.set()
        try:
            loop.run_forever()
        finally:
            for close in self._closers:
                try:
                    close()
                except Exception:
                    pass
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    async def _open(self, listener: Listener) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UDPProtocol(self, listener.recursion),
                local_addr=(listener.host, listener.port),
                family=socket.AF_INET,
            )
            self._closers.append(transport.close)
            listener.bound.append("udp")
            server = await asyncio.start_server(
                lambda r, w: self._tcp_client(r, w, listener.recursion),
                listener.host,
                listener.port,
                family=socket.AF_INET,
                reuse_address=True,
            )
            self._closers.append(server.close)
            listener.bound.append("tcp")
        except OSError as exc:
            listener.error = exc.strerror or str(exc)
            log.error("DNS listener %s:%s: %s", listener.host, listener.port, listener.error)

    # -- UDP -------------------------------------------------------------------------
    def handle_udp(self, data: bytes, addr: Any, transport: Any, recursion: bool) -> None:
        """Answer (or forward, or drop) one datagram."""
        decision = self._decide(data, addr, recursion)
        if decision.reply is not None:
            transport.sendto(decision.reply, addr)
            self.stats["answered"] += 1
        elif decision.forward and self._forwarding < MAX_FORWARDS:
            self._forwarding += 1
            task = asyncio.ensure_future(self._forward(data, tcp=False))
            task.add_done_callback(lambda t: self._forwarded(t, transport.sendto, addr))
        else:
            self.stats["dropped"] += 1

    def _decide(self, data: bytes, peer: Any, recursion: bool) -> Any:
        """The zone's decision; malformed packets (or a zone that fails on one) are counted."""
        from banger_dns.zone import DROP

        try:
            decision = self.zone.answer(data, recursion=recursion)
        except Exception as exc:  # one bad packet must never cost more than a count
            self.note_malformed(peer, f"{type(exc).__name__}: {exc}")
            return DROP
        if decision.malformed:
            self.note_malformed(peer, "not a well-formed query")
        return decision

    def note_malformed(self, peer: Any, why: str) -> None:
        """Count a malformed packet (rate-limited DEBUG log, see :class:`MalformedPackets`)."""
        self.stats["malformed"] += 1
        self.malformed.add(peer, why)

    def _forwarded(self, task: asyncio.Future[Any], send: Any, *args: Any) -> None:
        self._forwarding -= 1
        if task.cancelled() or task.exception() is not None:
            return
        reply = task.result()
        if reply is not None:
            self.stats["forwarded"] += 1
            try:
                send(reply, *args)
            except Exception:
                pass

    # -- TCP ---------------------------------------------------------------------------
    async def _tcp_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, recursion: bool
    ) -> None:
        if self._tcp_clients >= MAX_TCP_CLIENTS:
            writer.close()
            return
        self._tcp_clients += 1
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE)
                    (length,) = struct.unpack("!H", head)
                    if length > MAX_QUERY:
                        break  # nobody sends queries this long: drop the connection
                    data = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    break
                decision = self._decide(data, writer.get_extra_info("peername"), recursion)
                reply = decision.reply
                if reply is None and decision.forward:
                    reply = await self._forward(data, tcp=True)
                if reply is None:
                    self.stats["dropped"] += 1
                    continue
                self.stats["answered"] += 1
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._tcp_clients -= 1
            writer.close()

    # -- forwarding ------------------------------------------------------------------------
    async def _forward(self, data: bytes, *, tcp: bool) -> bytes | None:
        """Ask each upstream in turn; SERVFAIL when none answers."""
        for host, port in self.upstreams:
            try:
                query = _tcp_query if tcp else _udp_query
                reply = await asyncio.wait_for(query(data, host, port), FORWARD_TIMEOUT)
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                continue
            if reply is not None and reply[:2] == data[:2]:
                return reply
        return _servfail(data)


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer, recursion: bool) -> None:
        self.server = server
        self.recursion = recursion
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            self.server.handle_udp(data, addr, self.transport, self.recursion)
        except Exception as exc:  # one bad packet must never stop the listener, nor fill the log
            self.server.note_malformed(addr, f"{type(exc).__name__}: {exc}")

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors from clients that went away


class _OneReply(asyncio.DatagramProtocol):
    def __init__(self, future: asyncio.Future[bytes]) -> None:
        self.future = future

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.future.done():
            self.future.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


async def _udp_query(data: bytes, host: str, port: int) -> bytes:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[bytes] = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _OneReply(future), remote_addr=(host, port)
    )
    try:
        transport.sendto(data)
        return await future
    finally:
        transport.close()


async def _tcp_query(data: bytes, host: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(struct.pack("!H", len(data)) + data)
        await writer.drain()
        (length,) = struct.unpack("!H", await reader.readexactly(2))
        return await reader.readexactly(length)
    finally:
        writer.close()


def _servfail(data: bytes) -> bytes | None:
    try:
        query = DNSRecord.parse(data)
        reply = query.reply(ra=1, aa=0)
        reply.header.rcode = RCODE.SERVFAIL
        return bytes(reply.pack())
    except Exception:  # garbage, or a question dnslib cannot encode again
        return None
