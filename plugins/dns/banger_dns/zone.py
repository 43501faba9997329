"""The ``vm.`` zone: records held in memory, and the answer to one DNS message.

Nothing here does I/O: the server calls :meth:`Zone.answer` with the bytes of
a query and sends back what it returns. Records are plain dict entries, so
lifecycle hooks (worker threads) update them while the server answers
without ever waiting on the store.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from dnslib import NS, QTYPE, RCODE, RR, SOA, A, DNSHeader, DNSQuestion, DNSRecord

DOMAIN = "vm"
LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
MAX_QUERY = 4096  # bytes; a query is tiny, anything larger is garbage
CACHE_SIZE = 4096  # cached authoritative answers (cleared when records change)


@dataclass(frozen=True)
class Decision:
    """What to do with a query.

    ``reply`` is the bytes to send back, or ``None`` to drop the packet;
    ``forward`` says the name is outside ``vm.`` and the listener may forward
    the query to an upstream resolver instead of refusing it; ``malformed``
    says the packet was not a well-formed query (the server counts those).
    """

    reply: bytes | None
    forward: bool = False
    malformed: bool = False


DROP = Decision(None, malformed=True)
MAX_NAME = 255
"""Bytes in a domain name on the wire (RFC 1035 2.3.4); longer ones are malformed."""


class Zone:
    """A-records of running VMs under ``vm.``, answered authoritatively."""

    def __init__(self, ttl: int = 5) -> None:
        self.ttl = ttl
        self._records: dict[str, str] = {}
        self._lock = threading.Lock()  # writers only; readers use the dict as is
        self._serial = 1
        self._cache: dict[bytes, bytes] = {}

    # -- records -------------------------------------------------------------
    def set(self, name: str, address: str) -> None:
        """Publish ``<name>.vm`` -> ``address`` (replacing an older address)."""
        with self._lock:
            self._records[name.lower()] = address
            self._changed()

    def remove(self, name: str) -> None:
        """Withdraw ``<name>.vm`` (missing is fine)."""
        with self._lock:
            if self._records.pop(name.lower(), None) is not None:
                self._changed()

    def replace(self, records: dict[str, str]) -> None:
        """Make the zone exactly ``records`` (``{name: address}``)."""
        with self._lock:
            self._records = {k.lower(): v for k, v in records.items()}
            self._changed()

    def records(self) -> dict[str, str]:
        """A copy of ``{name: address}``."""
        return dict(self._records)

    def _changed(self) -> None:
        self._serial += 1
        self._cache = {}

    # -- answering -------------------------------------------------------------
    def answer(self, data: bytes, *, recursion: bool = False) -> Decision:
        """Decide the reply to the DNS message ``data``.

        Garbage gets FORMERR when its header can be read, else it is dropped;
        names under ``vm.`` get authoritative answers; other names get
        REFUSED, or ``forward=True`` when ``recursion`` (the guests' listener).
        """
        if len(data) < 12 or len(data) > MAX_QUERY:
            return DROP
        cache = self._cache
        key = data[2:] + (b"\x01" if recursion else b"\x00")  # the RA bit differs
        cached = cache.get(key)
        if cached is not None:
            return Decision(data[:2] + cached)
        try:
            query = DNSRecord.parse(data)
        except Exception:  # dnslib raises many kinds on garbage
            return self._formerr(data)
        header = query.header
        if header.qr or header.opcode != 0 or len(query.questions) != 1 or query.rr:
            return self._formerr(data)
        question = query.questions[0]
        labels = question.qname.label
        try:
            names = [label.decode("ascii").lower() for label in labels]
        except UnicodeDecodeError:
            return self._formerr(data)
        if not names or not all(LABEL.match(n) for n in names):
            return self._formerr(data)
        if sum(len(n) + 1 for n in names) + 1 > MAX_NAME:
            return self._formerr(data)  # dnslib would refuse to pack the answer
        if names[-1] != DOMAIN:
            if recursion:
                return Decision(None, forward=True)
            return self._reply(query, RCODE.REFUSED, aa=False, recursion=recursion)
        try:
            packed = self._authoritative(query, question, names[:-1], recursion).pack()
        except Exception:  # dnslib refuses what it cannot encode: never an error per packet
            return self._formerr(data)
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        cache[key] = packed[2:]
        return Decision(packed)

    def _authoritative(
        self, query: DNSRecord, question: DNSQuestion, host: list[str], recursion: bool
    ) -> DNSRecord:
        reply = self._header(query, RCODE.NOERROR, aa=True, recursion=recursion)
        qtype = question.qtype
        zone = f"{DOMAIN}."
        if not host:  # the apex
            if qtype in (QTYPE.SOA, QTYPE.ANY):
                reply.add_answer(self._soa())
            if qtype in (QTYPE.NS, QTYPE.ANY):
                reply.add_answer(RR(zone, QTYPE.NS, ttl=self.ttl, rdata=NS(f"ns.{zone}")))
            if not reply.rr:
                reply.add_auth(self._soa())
            return reply
        address = self._records.get(host[0]) if len(host) == 1 else None
        if address is None:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self._soa())
        elif qtype in (QTYPE.A, QTYPE.ANY):
            reply.add_answer(RR(question.qname, QTYPE.A, ttl=self.ttl, rdata=A(address)))
        else:  # AAAA and others: the name exists but has no such record
            reply.add_auth(self._soa())
        return reply

    def _soa(self) -> RR:
        zone = f"{DOMAIN}."
        return RR(
            zone,
            QTYPE.SOA,
            ttl=self.ttl,
            rdata=SOA(f"ns.{zone}", f"hostmaster.{zone}", (self._serial, 60, 30, 3600, self.ttl)),
        )

    @staticmethod
    def _header(query: DNSRecord, rcode: int, *, aa: bool, recursion: bool) -> DNSRecord:
        header = DNSHeader(
            id=query.header.id, qr=1, aa=int(aa), rd=query.header.rd, ra=int(recursion), rcode=rcode
        )
        return DNSRecord(header, q=query.questions[0] if query.questions else None)

    def _reply(self, query: DNSRecord, rcode: int, *, aa: bool, recursion: bool) -> Decision:
        try:
            return Decision(self._header(query, rcode, aa=aa, recursion=recursion).pack())
        except Exception:  # a question dnslib cannot encode again
            return DROP

    @staticmethod
    def _formerr(data: bytes) -> Decision:
        """A bare FORMERR header echoing the query's ID (no question: it may be garbage)."""
        if data[2] & 0x80:  # a response: never answer those (no loops between servers)
            return DROP
        flags = 0x8000 | (data[2] & 0x79) << 8 | RCODE.FORMERR
        return Decision(data[:2] + flags.to_bytes(2, "big") + bytes(8), malformed=True)
