"""Checks shared by the end-to-end tests."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from banger_core import system
from pytest_banger import wait_until
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
        wait_until(
            lambda: len(links(host, "bgtap")) <= host.tap_pool_size,
            timeout=5,
            what=f"at most {host.tap_pool_size} TAPs (the idle pool)",
            diagnostics=lambda: f"TAPs: {links(host, 'bgtap')}",
        )
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
    wait_until(host.vmm_pids, timeout=30, what=f"a VMM started by `banger {' '.join(args)}`")
    return proc


def without_programs(argv: list[str], *programs: str) -> list[str]:
    """``argv`` run on a host where ``programs`` are not installed.

    The command runs in a private mount namespace where every copy of each
    program on the search path (``PATH`` and the sbin directories) is
    covered by ``/dev/null``, which is not executable: it is found nowhere,
    as after ``apt remove``. A daemon started this way keeps that view; the
    machine's own files are untouched.
    """
    search = os.environ.get("PATH", "").split(os.pathsep) + system.SBIN.split(":")
    hidden = {
        os.path.realpath(Path(d) / p)
        for p in programs
        for d in search
        if d and (Path(d) / p).exists()
    }
    binds = "".join(f"mount --bind /dev/null {shlex.quote(h)} && " for h in sorted(hidden))
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        binds + 'exec "$@"',
        "sh",
        *argv,
    ]
