"""The DNS server over real loopback sockets: answers, forwarding, garbage."""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import struct
import threading
import time

import pytest
from dnsclient import ask, free_port, tcp, udp
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from banger_dns.server import DNSServer, Listener
from banger_dns.zone import Zone
from pytest_banger import wait_until


@pytest.fixture
def served():
    zone = Zone(ttl=7)
    zone.set("c1", "172.30.0.2")
    port = free_port()
    server = DNSServer(zone, [Listener("127.0.0.1", port)])
    server.start()
    yield zone, port, server
    server.stop()


@pytest.mark.parametrize("over", ["udp", "tcp"])
def test_authoritative_answers(served, over):
    _, port, _ = served
    reply = ask("127.0.0.1", port, "c1.vm", over=over)
    assert reply.header.rcode == RCODE.NOERROR and reply.header.aa == 1
    assert [(str(r.rdata), r.ttl) for r in reply.rr] == [("172.30.0.2", 7)]
    # case-insensitive, and the question is echoed as asked
    reply = ask("127.0.0.1", port, "C1.Vm", over=over)
    assert str(reply.rr[0].rdata) == "172.30.0.2"
    assert str(reply.q.qname) == "C1.Vm."
    # other names under vm.: NXDOMAIN with the SOA
    reply = ask("127.0.0.1", port, "nope.vm", over=over)
    assert reply.header.rcode == RCODE.NXDOMAIN
    assert reply.auth[0].rtype == QTYPE.SOA
    assert ask("127.0.0.1", port, "a.c1.vm", over=over).header.rcode == RCODE.NXDOMAIN
    # AAAA of an existing name: empty NOERROR
    reply = ask("127.0.0.1", port, "c1.vm", "AAAA", over=over)
    assert reply.header.rcode == RCODE.NOERROR and reply.rr == []
    # the zone's SOA and NS
    assert ask("127.0.0.1", port, "vm", "SOA", over=over).rr[0].rtype == QTYPE.SOA
    assert str(ask("127.0.0.1", port, "vm", "NS", over=over).rr[0].rdata) == "ns.vm."
    # outside vm.: REFUSED
    assert ask("127.0.0.1", port, "example.com", over=over).header.rcode == RCODE.REFUSED


def test_records_follow_changes(served):
    zone, port, _ = served
    assert ask("127.0.0.1", port, "c1.vm").rr  # cached now
    zone.remove("c1")
    assert ask("127.0.0.1", port, "c1.vm").header.rcode == RCODE.NXDOMAIN
    zone.set("c1", "172.30.0.9")
    assert str(ask("127.0.0.1", port, "c1.vm").rr[0].rdata) == "172.30.0.9"
    zone.replace({"c2": "172.30.0.3"})
    assert ask("127.0.0.1", port, "c1.vm").header.rcode == RCODE.NXDOMAIN
    assert str(ask("127.0.0.1", port, "c2.vm").rr[0].rdata) == "172.30.0.3"


def test_the_reply_carries_the_query_id(served):
    _, port, _ = served
    for qid in (1, 4242, 65535):
        query = DNSRecord.question("c1.vm")
        query.header.id = qid
        assert DNSRecord.parse(udp("127.0.0.1", port, query.pack())).header.id == qid


class FakeUpstream:
    """A resolver on loopback that answers every A query with 203.0.113.7."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", self.port))
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            query = DNSRecord.parse(data)
            self.seen.append(str(query.q.qname))
            reply = query.reply()
            reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A("203.0.113.7"), ttl=60))
            self.sock.sendto(reply.pack(), addr)

    def close(self) -> None:
        self.sock.close()


def test_guest_listener_forwards_other_names():
    upstream = FakeUpstream()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # never answers
    silent.bind(("127.0.0.1", 0))
    zone = Zone()
    zone.set("c1", "172.30.0.2")
    port = free_port()
    server = DNSServer(
        zone,
        [Listener("127.0.0.1", port, recursion=True)],
        [silent.getsockname(), ("127.0.0.1", upstream.port)],
    )
    server.start()
    try:
        reply = ask("127.0.0.1", port, "www.example.test")
        assert str(reply.rr[0].rdata) == "203.0.113.7"
        assert upstream.seen == ["www.example.test."]
        # .vm is still answered locally, never forwarded
        assert str(ask("127.0.0.1", port, "c1.vm").rr[0].rdata) == "172.30.0.2"
        assert upstream.seen == ["www.example.test."]
    finally:
        server.stop()
        upstream.close()
        silent.close()


class FakeTCPUpstream:
    """A TCP resolver on loopback that answers every A query with 203.0.113.8."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                length = struct.unpack("!H", conn.recv(2))[0]
                query = DNSRecord.parse(conn.recv(length))
                reply = query.reply()
                reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A("203.0.113.8"), ttl=60))
                data = reply.pack()
                conn.sendall(struct.pack("!H", len(data)) + data)


def test_tcp_queries_are_forwarded_over_tcp():
    upstream = FakeTCPUpstream()
    port = free_port()
    server = DNSServer(
        Zone(), [Listener("127.0.0.1", port, recursion=True)], [("127.0.0.1", upstream.port)]
    )
    server.start()
    try:
        reply = ask("127.0.0.1", port, "www.example.test", over="tcp")
        assert str(reply.rr[0].rdata) == "203.0.113.8"
    finally:
        server.stop()
        upstream.sock.close()


def test_no_upstream_is_servfail():
    port = free_port()
    server = DNSServer(Zone(), [Listener("127.0.0.1", port, recursion=True)], [])
    server.start()
    try:
        assert ask("127.0.0.1", port, "example.com").header.rcode == RCODE.SERVFAIL
    finally:
        server.stop()


def test_bind_failure_is_reported_not_raised():
    port = free_port()
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", port))
    server = DNSServer(Zone(), [Listener("127.0.0.1", port)])
    server.start()
    try:
        assert "failed" in server.describe()["listeners"][0]
    finally:
        server.stop()
        blocker.close()


def _mutations(rng: random.Random, good: bytes) -> bytes:
    kind = rng.randrange(7)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 600))
    if kind == 1:
        return good[: rng.randrange(len(good))]
    if kind == 2:
        buf = bytearray(good)
        for _ in range(rng.randrange(1, 6)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        return bytes(buf)
    if kind == 3:
        return good + rng.randbytes(rng.randrange(1, 5000))
    if kind == 4:  # odd characters in the name
        label = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20)))
        return good[:12] + bytes([len(label)]) + label + b"\x02vm\x00\x00\x01\x00\x01"
    if kind == 5:  # a compression pointer loop
        return good[:12] + b"\xc0\x0c\x00\x01\x00\x01"
    return good[:12] + b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 200  # labels past the end


def test_garbage_gets_formerr_or_nothing_and_the_server_keeps_answering(served):
    _, port, _ = served
    rng = random.Random(9)
    good = DNSRecord.question("c1.vm").pack()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.5)
    replies = 0
    for _ in range(3000):
        data = _mutations(rng, good)
        sock.sendto(data or b"\0", ("127.0.0.1", port))
        # drain whatever came back; anything that comes back must be a DNS reply
        sock.setblocking(False)
        try:
            while True:
                raw = sock.recv(65535)
                replies += 1
                assert len(raw) >= 12 and raw[2] & 0x80, raw  # QR set: a response
        except BlockingIOError:
            pass
        sock.setblocking(True)
    sock.close()
    # garbage over TCP too: a stream that ends mid-message, and an absurd length
    for payload in (b"\x00", b"\x00\x30abc", b"\xff\xff" + b"x" * 100, rng.randbytes(300)):
        with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
            conn.sendall(payload)
    assert replies > 0
    # The flood may still fill the socket's queue (the kernel drops what does
    # not fit, as with any UDP server): retry like a resolver does, until a
    # deadline.
    deadline = time.monotonic() + 15
    raw = None
    while raw is None and time.monotonic() < deadline:
        raw = udp("127.0.0.1", port, good, timeout=0.5)
    assert raw is not None and str(DNSRecord.parse(raw).rr[0].rdata) == "172.30.0.2"
    assert str(ask("127.0.0.1", port, "c1.vm", over="tcp").rr[0].rdata) == "172.30.0.2"


@pytest.mark.parametrize("name", ["bad name.vm", "caf\xe9.vm", "a/b.vm", "x*.vm"])
def test_odd_names_get_formerr(served, name):
    _, port, _ = served
    labels = name.encode("latin-1").split(b".")
    qname = b"".join(bytes([len(lab)]) + lab for lab in labels) + b"\0"
    query = struct.pack("!HHHHHH", 77, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)
    reply = udp("127.0.0.1", port, query)
    assert reply is not None
    assert struct.unpack("!H", reply[:2])[0] == 77 and reply[3] & 0x0F == RCODE.FORMERR


def test_tcp_and_udp_answer_the_same(served):
    _, port, _ = served
    query = DNSRecord.question("c1.vm").pack()
    assert udp("127.0.0.1", port, query) == tcp("127.0.0.1", port, query)


def test_both_listeners_share_the_zone_but_not_the_ra_bit():
    zone = Zone()
    zone.set("c1", "172.30.0.2")
    query = bytes(DNSRecord.question("c1.vm").pack())
    for _ in range(2):  # the second round is served from the answer cache
        host = DNSRecord.parse(zone.answer(query, recursion=False).reply)
        guests = DNSRecord.parse(zone.answer(query, recursion=True).reply)
        assert (host.header.ra, guests.header.ra) == (0, 1)
        assert str(host.rr[0].rdata) == str(guests.rr[0].rdata) == "172.30.0.2"


def long_name_query(qid: int, tld: bytes = b"vm") -> bytes:
    """A query whose name is 263 bytes on the wire (the limit is 255)."""
    labels = [b"a" * 63] * 4 + [tld]
    qname = b"".join(bytes([len(lab)]) + lab for lab in labels) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)


@pytest.mark.parametrize("recursion", [False, True])
def test_names_over_255_bytes_are_counted_not_logged_per_packet(recursion, caplog):
    """A guest's 1,000 bad packets once logged 1,000 ERROR tracebacks (1.7 MB)."""
    zone = Zone()
    zone.set("c1", "172.30.0.2")
    port = free_port()
    server = DNSServer(zone, [Listener("127.0.0.1", port, recursion=recursion)], upstreams=[])
    caplog.set_level(logging.DEBUG, logger="banger.plugins.dns")
    server.start()
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        formerr = 0
        for i in range(1000):
            sock.sendto(long_name_query(i, b"vm" if i % 2 else b"com"), ("127.0.0.1", port))
            if i % 50 == 49:  # pace the flood so the socket queue never overflows
                wait_until(
                    lambda i=i: server.stats["malformed"] >= i + 1,
                    interval=0.01,
                    what=f"the server to count {i + 1} malformed packets",
                )
        wait_until(
            lambda: server.stats["malformed"] >= 1000,
            interval=0.01,
            what="the server to count 1000 malformed packets",
        )
        sock.settimeout(0.2)
        with contextlib.suppress(TimeoutError):
            while True:
                raw = sock.recv(65535)
                formerr += raw[3] & 0x0F == RCODE.FORMERR
        sock.close()
        assert server.stats["malformed"] == 1000
        assert formerr > 0  # answered FORMERR, like any other bad query
        assert server.describe()["malformed_packets"] == 1000
        # over TCP too: FORMERR, and the connection keeps working
        reply = tcp("127.0.0.1", port, long_name_query(7))
        assert reply is not None and reply[3] & 0x0F == RCODE.FORMERR
        assert str(ask("127.0.0.1", port, "c1.vm").rr[0].rdata) == "172.30.0.2"
    finally:
        server.stop()
    records = [r for r in caplog.records if r.name == "banger.plugins.dns"]
    assert not [r for r in records if r.levelno >= logging.WARNING], records[:3]
    assert not [r for r in records if r.exc_info], "no tracebacks"
    assert 1 <= len([r for r in records if "malformed" in r.getMessage()]) <= 2


def test_malformed_packet_reports_are_rate_limited():
    from banger_dns.server import MalformedPackets

    now = [100.0]
    counter = MalformedPackets(every=60.0, clock=lambda: now[0])
    logged = []
    import banger_dns.server as srv

    original = srv.log.debug
    srv.log.debug = lambda *a: logged.append(a[0] % a[1:])  # type: ignore[method-assign]
    try:
        for _ in range(500):
            counter.add(("10.0.0.2", 5353), "bad")
        now[0] += 61
        counter.add(("10.0.0.2", 5353), "worse")
    finally:
        srv.log.debug = original  # type: ignore[method-assign]
    assert counter.total == 501
    assert len(logged) == 2
    assert logged[1].startswith("DNS: 500 malformed packet(s) since the last report (501 in all)")
