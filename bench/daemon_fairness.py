"""Daemon fairness under abuse: ``vm list`` latency and daemon memory while
one client floods and seventy stops wait on a frozen VMM.

On a simulated host (needs root and a built Debian image, see
``pytest_banger.images``):

1. one VM runs; its VMM is frozen with SIGSTOP so ``vm.stop`` requests block;
2. one connection writes 20,000 ``vm.list`` requests and never reads;
3. seventy ``vm.stop`` requests for the frozen VM are sent on their own
   connections;
4. meanwhile ``vm.list`` round trips are timed (goal: under 200 ms);
5. the daemon's RSS is read before, during and after.

Run: ``.venv/bin/python bench/daemon_fairness.py``.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import time
from pathlib import Path

from banger_core.rpc import protocol
from banger_core.rpc.client import RPCClient
from pytest_banger.images import cached_debian_image
from pytest_banger.simhost import SimulatedHost


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def list_ms(sock: Path, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        with RPCClient(sock, timeout=60) as client:
            client.call("vm.list")
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    image = cached_debian_image()
    with SimulatedHost(extra_config="") as host:
        host.start()
        host.register_image(image)
        host.cli("vm", "create", "frozen", "--memory", "128")
        sock = host.state_dir / "run" / "bangerd.sock"
        daemon = host.daemon_pid()
        assert daemon
        baseline = list_ms(sock, 20)
        rss_before = rss_mib(daemon)
        vmm = host.json("vm", "show", "frozen")["pid"]
        os.kill(vmm, signal.SIGSTOP)
        try:
            flood = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            flood.connect(str(sock))
            flood.setblocking(False)
            payload = protocol.request(1, "vm.list", {}) * 20000
            sent = 0
            deadline = time.monotonic() + 10
            while sent < len(payload) and time.monotonic() < deadline:
                try:
                    sent += flood.send(payload[sent : sent + 65536])
                except BlockingIOError:
                    time.sleep(0.01)
            stops = []
            for i in range(70):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(str(sock))
                s.sendall(protocol.request(i, "vm.stop", {"ref": "frozen"}))
                stops.append(s)
            time.sleep(1.0)  # a bench, not a test: let the pile-up form
            loaded = list_ms(sock, 50)
            rss_during = rss_mib(daemon)
            flood.close()
        finally:
            os.kill(vmm, signal.SIGCONT)
        for s in stops:
            s.settimeout(120)
            try:
                s.recv(4096)
            except OSError:
                pass
            s.close()
        time.sleep(2.0)
        rss_after = rss_mib(daemon)
        print(
            f"vm.list idle:     median {statistics.median(baseline):7.1f} ms  "
            f"max {max(baseline):7.1f} ms"
        )
        print(
            f"vm.list loaded:   median {statistics.median(loaded):7.1f} ms  "
            f"p95 {sorted(loaded)[int(len(loaded) * 0.95) - 1]:7.1f} ms  "
            f"max {max(loaded):7.1f} ms  (goal < 200 ms)"
        )
        print(f"flood bytes accepted before the daemon stopped reading: {sent} of {len(payload)}")
        print(
            f"daemon RSS: before {rss_before:.1f} MiB, during {rss_during:.1f} MiB, "
            f"after {rss_after:.1f} MiB"
        )


if __name__ == "__main__":
    main()
