"""Checks shared by the end-to-end tests."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from banger_core import system
from pytest_banger.simhost import SimulatedHost, console_script


def links(host: SimulatedHost, prefix: str) -> list[str]:
    """Interface names starting with ``prefix`` in the host's namespace."""
    out = host.netns_run("ip", "-o", "link", "show").stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    return [n for n in names if n.startswith(prefix)]


def assert_nothing_left(host: SimulatedHost, *, vms_expected: int = 0) -> None:
    """No VM rows, disks, VMM processes, veths or spare TAPs beyond the pool."""
    listing = host.json("vm", "list")
    assert len(listing) == vms_expected, listing
    vm_dirs = list((Path(host.state_dir) / "vms").iterdir())
    assert len(vm_dirs) == vms_expected, vm_dirs
    if vms_expected == 0:
        assert host.vmm_pids() == []
        # Only the idle pool; a refill still running may briefly add a spare.
        deadline = time.monotonic() + 5
        while len(taps := links(host, "bgtap")) > host.tap_pool_size:
            assert time.monotonic() < deadline, taps
            time.sleep(0.1)
    if vms_expected == 0:
        assert_no_loops_or_mounts(host)


def assert_no_loops_or_mounts(host: SimulatedHost) -> None:
    """No loop device or mount refers to the host's files."""
    root = str(host.root)
    loops = system.run(["losetup", "-a"], check=False).stdout
    assert root not in loops, loops
    mounts = Path("/proc/self/mountinfo").read_text()
    assert root not in mounts


def cli_until_vmm_starts(host: SimulatedHost, *args: str) -> subprocess.Popen:
    """Start ``banger ARGS`` in its own process; return once a VMM of the host runs.

    The process shares our session, so a test can send it SIGINT like a
    terminal's Ctrl-C.
    """
    proc = system.spawn(
        [console_script("banger"), *args],
        env=host.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        new_session=False,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not host.vmm_pids():
        time.sleep(0.1)
    assert host.vmm_pids(), f"no VMM started for `banger {' '.join(args)}`"
    return proc
