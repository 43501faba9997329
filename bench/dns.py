"""DNS answers per second: banger-dns's server answering ``.vm`` A queries over loopback UDP.

The server (the plugin's own ``DNSServer`` with a zone of 50 running VMs) runs
in a child process, as it runs in ``bangerd``; this process is the client. It
keeps a window of queries in flight on one UDP socket, asks for names spread
over the zone (and some names that do not exist), and checks every answer's
ID. Prints each run and the median queries/second.

Run with ``make bench`` or ``.venv/bin/python bench/dns.py [--runs 5] [--queries 20000]``.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import statistics
import sys
import time

from banger_core import system

SERVER = """
import signal, sys, threading
from banger_dns.server import DNSServer, Listener
from banger_dns.zone import Zone
zone = Zone()
for i in range(50):
    zone.set(f"vm{i}", f"172.30.0.{i + 2}")
server = DNSServer(zone, [Listener("127.0.0.1", int(sys.argv[1]))])
server.start()
print("ready", server.describe()["listeners"], flush=True)
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: done.set())
done.wait()
server.stop()
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def queries() -> list[bytes]:
    """Pre-built queries (ID patched in per send): 50 names that exist, 10 that do not."""
    from dnslib import DNSRecord

    names = [f"vm{i}.vm" for i in range(50)] + [f"missing{i}.vm" for i in range(10)]
    return [bytes(DNSRecord.question(n).pack()) for n in names]


def run_once(port: int, total: int, window: int) -> float:
    """Send ``total`` queries keeping ``window`` in flight; return answers per second."""
    packets = queries()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    sent = answered = lost = 0
    outstanding: set[int] = set()
    started = time.perf_counter()
    while answered + lost < total:
        while len(outstanding) < window and sent < total:
            qid = sent & 0xFFFF
            sock.send(qid.to_bytes(2, "big") + packets[sent % len(packets)][2:])
            outstanding.add(qid)
            sent += 1
        ready, _, _ = select.select([sock], [], [], 1.0)
        if not ready:  # whatever is still out is lost; carry on
            lost += len(outstanding)
            outstanding.clear()
            continue
        while True:
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                break
            qid = int.from_bytes(data[:2], "big")
            if qid in outstanding:
                outstanding.discard(qid)
                answered += 1
    elapsed = time.perf_counter() - started
    sock.close()
    if lost:
        print(f"  ({lost} queries lost)")
    return answered / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--queries", type=int, default=20000)
    parser.add_argument("--window", type=int, default=32, help="queries in flight")
    args = parser.parse_args()
    port = free_port()
    import subprocess

    proc = system.spawn([sys.executable, "-c", SERVER, str(port)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if not line.startswith("ready"):
            print(f"server did not start: {line!r}", file=sys.stderr)
            return 1
        run_once(port, 2000, args.window)  # warm-up
        rates = []
        for i in range(args.runs):
            rate = run_once(port, args.queries, args.window)
            rates.append(rate)
            print(f"run {i + 1}: {rate:,.0f} queries/s")
        print(
            f"median: {statistics.median(rates):,.0f} queries/s over loopback UDP "
            f"({args.runs} runs of {args.queries} queries, {args.window} in flight, "
            f"{os.cpu_count()} CPUs)"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except Exception:
            proc.kill()
            proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
