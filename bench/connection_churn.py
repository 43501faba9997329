"""``vm list`` while other clients open and close connections in a tight loop.

Issue 14 measured ``banger vm list`` at 2.9-3.6 s while four clients did
nothing but connect and close. On a simulated host (root; no VM needed):

1. the daemon starts and one VM record exists (``vm list`` has rows to show);
2. ``vm.list`` round trips (one connection each) and ``banger vm list``
   runs are timed alone;
3. four processes connect and close as fast as they can (half of them send
   a ``daemon.status`` first) while the same round trips are timed again.

Run: ``.venv/bin/python bench/connection_churn.py``. Prints medians and
maxima in milliseconds and the churners' connection rate. ``banger
--version`` under the same load shows what CPU contention alone costs the
CLI's start-up (the churners are busy processes on the same cores).

Measured on a 2-core development machine shared with other work (Dec 2026):
before the fix ``vm.list`` over RPC took a median 605 ms (max 2.5 s) with
churners at 2,000 connections/s; after it 59 ms (max 400 ms) at 7,300
connections/s, 1.7 ms alone.
"""

from __future__ import annotations

import multiprocessing
import socket
import statistics
import time
from pathlib import Path

from banger_core.rpc.client import RPCClient
from pytest_banger.simhost import SimulatedHost

CHURNERS = 4
SAMPLES = 30


def rpc_list_ms(sock: Path) -> float:
    start = time.perf_counter()
    with RPCClient(sock, timeout=60) as client:
        client.call("vm.list")
    return (time.perf_counter() - start) * 1000


def cli_ms(host: SimulatedHost, *args: str) -> float:
    start = time.perf_counter()
    host.cli(*args)
    return (time.perf_counter() - start) * 1000


def churn(sock: Path, stop: object, counts: object, index: int, ask: bool) -> None:
    request = b'{"id": 1, "method": "daemon.status", "params": {}}\n'
    while not stop.is_set():  # type: ignore[attr-defined]
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(sock))
            if ask:
                s.sendall(request)
                s.recv(65536)
        except OSError:
            pass
        finally:
            s.close()
        counts[index] += 1  # type: ignore[index]


def summary(name: str, values: list[float]) -> str:
    return f"{name}: median {statistics.median(values):.1f} ms, max {max(values):.1f} ms"


def main() -> None:
    with SimulatedHost() as host:
        host.start()
        sock = host.state_dir / "run" / "bangerd.sock"
        alone_rpc = [rpc_list_ms(sock) for _ in range(SAMPLES)]
        alone_cli = [cli_ms(host, "vm", "list") for _ in range(5)]
        alone_version = [cli_ms(host, "--version") for _ in range(5)]
        stop = multiprocessing.Event()
        counts = multiprocessing.Array("l", CHURNERS, lock=False)
        threads = [
            multiprocessing.Process(
                target=churn, args=(sock, stop, counts, i, i % 2 == 0), daemon=True
            )
            for i in range(CHURNERS)
        ]
        for t in threads:
            t.start()
        time.sleep(1.0)  # let the churn reach its steady rate (a benchmark, not a test)
        began = time.perf_counter()
        before = sum(counts)
        busy_rpc = [rpc_list_ms(sock) for _ in range(SAMPLES)]
        busy_cli = [cli_ms(host, "vm", "list") for _ in range(5)]
        # The same CPU contention without the daemon: what the CLI's start-up costs.
        busy_version = [cli_ms(host, "--version") for _ in range(5)]
        rate = (sum(counts) - before) / (time.perf_counter() - began)
        stop.set()
        for t in threads:
            t.join(10)
        print(summary("vm.list RPC alone", alone_rpc))
        print(summary("banger vm list alone", alone_cli))
        print(summary(f"vm.list RPC with {CHURNERS} churners", busy_rpc))
        print(summary(f"banger vm list with {CHURNERS} churners", busy_cli))
        print(summary("banger --version alone (no daemon)", alone_version))
        print(summary(f"banger --version with {CHURNERS} churners (no daemon)", busy_version))
        print(f"churners: {rate:.0f} connections/s")


if __name__ == "__main__":
    main()
