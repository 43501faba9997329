"""``vm exec`` speed on the simulated host: the agent round trip, and the whole CLI against ssh.

1. RPC/agent level: from this process, ``vm.agent_connect`` over the
   daemon's socket (the daemon opens the guest agent stream and hands the
   descriptor back), then ``POST /exec`` of ``true`` until its exit frame.
   Goal: median at most 5 ms. The agent alone (connecting to the VM's vsock
   socket directly) is shown for reference.
2. Whole commands: ``banger vm exec c1 -- true`` against
   ``banger vm ssh c1 -- true``. Goal: exec at least 3 times faster.

Needs root. Usage: ``python bench/exec.py [--runs N] [--cli-runs N]``.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time
from collections.abc import Callable

from banger_core.rpc.client import RPCClient
from banger_vsock import protocol as p
from banger_vsock.hostconn import connect_port
from pytest_banger.images import cached_debian_image
from pytest_banger.simhost import SimulatedHost


def exec_true(conn: p.AgentConnection) -> int:
    """Run ``true`` on an open agent stream; its exit status."""
    with conn:
        conn.open_stream("/exec", {"argv": ["true"]})
        conn.send(p.F_STDIN, b"")
        while True:
            kind, payload = conn.recv()
            if kind == p.F_EXIT:
                return p.shell_exit_code(p.exit_status(payload))


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def line(label: str, times: list[float]) -> str:
    return (
        f"  {label:<34} median {statistics.median(times) * 1000:8.2f} ms   "
        f"min {min(times) * 1000:8.2f} ms   max {max(times) * 1000:8.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--cli-runs", type=int, default=20)
    args = parser.parse_args()
    image = cached_debian_image()
    with SimulatedHost(tap_pool_size=1) as host:
        host.start()
        host.register_image(image)
        host.cli("vm", "create", "c1", "--memory", "256")
        shown = host.json("vm", "show", "c1")
        uds = shown["plugins"]["vsock"]["uds_path"]
        rpc = RPCClient(host.state_dir / "run" / "bangerd.sock").connect()

        def via_daemon() -> None:
            _info, fd = rpc.call_with_fd("vm.agent_connect", {"ref": "c1"})
            assert exec_true(p.AgentConnection(socket.socket(fileno=fd))) == 0

        def direct() -> None:
            assert exec_true(p.AgentConnection(connect_port(uds, 1024))) == 0

        agent_rpc = timed(via_daemon, args.runs)
        agent_direct = timed(direct, args.runs)
        rpc.close()
        cli_exec = timed(lambda: host.cli("vm", "exec", "c1", "--", "true"), args.cli_runs)
        cli_ssh = timed(lambda: host.cli("vm", "ssh", "c1", "--", "true"), args.cli_runs)
    print(f"exec of `true` on the simulator ({args.runs} agent runs, {args.cli_runs} CLI runs)")
    print(line("RPC + agent (vm.agent_connect)", agent_rpc) + "   goal <= 5 ms")
    print(line("agent only (vsock socket)", agent_direct))
    print(line("banger vm exec c1 -- true", cli_exec))
    print(line("banger vm ssh c1 -- true", cli_ssh))
    ratio = statistics.median(cli_ssh) / statistics.median(cli_exec)
    print(f"  vm exec is {ratio:.1f}x faster than vm ssh (goal >= 3x)")


if __name__ == "__main__":
    main()
