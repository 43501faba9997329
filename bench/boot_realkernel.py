"""Time to SSH of the default Debian image on its own kernel, through ``banger-fcqemu``.

Runs the real CLI against a daemon on the simulated host whose VMM is
``banger-fcqemu`` (TCG on machines without usable KVM), creating and
deleting one VM per run, and prints the ``vm create`` wall time (until SSH
answers) plus milestones read from the guest's serial console. Needs root
and qemu-system-x86_64. Usage:
``python bench/boot_realkernel.py [--runs N] [--cpus N] [--memory MIB] [--init systemd|pid1]``.

``--init pid1`` boots with ``init=/usr/lib/banger/banger-boot`` (banger-boot
as the guest's PID 1, no systemd), added by a bench-local plugin; the
default is the product's path (systemd runs ``banger-boot --systemd``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from banger_fcqemu.accel import choose_accel
from pytest_banger.images import cached_debian_image
from pytest_banger.simhost import SimulatedHost

STAGE_LINE = re.compile(r"^\s+(?P<name>[a-zA-Z][\w ]*?)\s+(?P<secs>\d+\.\d+)s\s+ok")
KERNEL_TIME = re.compile(r"^\[\s*(?P<secs>\d+\.\d+)\]")
MILESTONES = {
    "root mounted": re.compile(r"EXT4-fs \(vda\): mounted"),
    "init started": re.compile(r"Run /sbin/init|systemd\[1\]: systemd \d+|banger-boot: starting"),
    "config applied": re.compile(r"banger-boot: (configuration applied|boot complete)"),
}


def milestones(console: str) -> dict[str, float]:
    """Guest-clock seconds of each milestone found on the console (kernel timestamps)."""
    found: dict[str, float] = {}
    for line in console.splitlines():
        stamp = KERNEL_TIME.match(line)
        for name, pattern in MILESTONES.items():
            if name not in found and stamp and pattern.search(line):
                found[name] = float(stamp["secs"])
    return found


PID1_PLUGIN = """
from banger_core import hookimpl


@hookimpl
def banger_vm_configure(machine):
    machine.boot_args.append("init=/usr/lib/banger/banger-boot")
"""


def pid1_plugin_site() -> Path:
    """A throwaway site directory holding a plugin that boots banger-boot as PID 1."""
    site = Path(tempfile.mkdtemp(prefix="bgr-bench-site-"))
    (site / "bench_pid1.py").write_text(PID1_PLUGIN)
    info = site / "banger_bench_pid1-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: banger-bench-pid1\nVersion: 0.0.1\n"
    )
    (info / "entry_points.txt").write_text("[banger]\nbench_pid1 = bench_pid1\n")
    return site


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--memory", type=int, default=1024)
    parser.add_argument("--init", choices=("systemd", "pid1"), default="systemd")
    args = parser.parse_args()
    image = cached_debian_image()
    accel, why = choose_accel()
    walls: list[float] = []
    env = {}
    site = None
    if args.init == "pid1":
        site = pid1_plugin_site()
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(site), os.environ.get("PYTHONPATH")) if p
        )
    with SimulatedHost(
        vmm="banger-fcqemu", ssh_timeout=600.0, stop_grace=180.0, subnet="172.30.9.0/24", env=env
    ) as host:
        host.start()
        host.register_image(image)
        for i in range(args.runs):
            name = f"rk{i}"
            started = time.perf_counter()
            result = host.cli(
                "vm",
                "create",
                name,
                "--cpus",
                str(args.cpus),
                "--memory",
                str(args.memory),
                timeout=900,
            )
            wall = time.perf_counter() - started
            walls.append(wall)
            stages = {
                m["name"]: float(m["secs"])
                for line in result.stderr.splitlines()
                if (m := STAGE_LINE.match(line))
            }
            marks = milestones(host.cli("vm", "logs", name).stdout)
            print(
                f"run {i + 1}: vm create until SSH {wall:6.1f} s   "
                + "   ".join(f"{k} {v:.1f} s" for k, v in stages.items())
            )
            print("        guest clock: " + "   ".join(f"{k} {v:.1f} s" for k, v in marks.items()))
            started = time.perf_counter()
            how = host.cli("vm", "stop", name, timeout=300).stdout.strip()
            print(f"        vm stop: {time.perf_counter() - started:.1f} s ({how})")
            host.cli("vm", "delete", "--force", name, timeout=300)
    if site is not None:
        shutil.rmtree(site, ignore_errors=True)
    print(
        f"banger-fcqemu ({accel}: {why}), guest init {args.init}, "
        f"{args.cpus} vCPU, {args.memory} MiB, "
        f"{args.runs} run(s): time to SSH median {statistics.median(walls):.1f} s, "
        f"min {min(walls):.1f} s, max {max(walls):.1f} s"
    )


if __name__ == "__main__":
    main()
