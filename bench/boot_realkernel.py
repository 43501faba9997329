"""Time to SSH of the default Debian image on its own kernel, through ``banger-fcqemu``.

Runs the real CLI against a daemon on the simulated host whose VMM is
``banger-fcqemu`` (TCG on machines without usable KVM), creating and
deleting one VM per run, and prints the ``vm create`` wall time (until SSH
answers) plus milestones read from the guest's serial console. Needs root
and qemu-system-x86_64. Usage:
``python bench/boot_realkernel.py [--runs N] [--cpus N] [--memory MIB]``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

from banger_core.fcqemu.accel import choose_accel
from banger_core.testing.images import cached_debian_image
from banger_core.testing.simhost import SimulatedHost

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--memory", type=int, default=1024)
    args = parser.parse_args()
    image = cached_debian_image()
    accel, why = choose_accel()
    walls: list[float] = []
    with SimulatedHost(vmm="banger-fcqemu", ssh_timeout=600.0, stop_grace=180.0,
                       subnet="172.30.9.0/24") as host:
        host.start()
        host.register_image(image)
        for i in range(args.runs):
            name = f"rk{i}"
            started = time.perf_counter()
            result = host.cli("vm", "create", name, "--cpus", str(args.cpus),
                              "--memory", str(args.memory), timeout=900)
            wall = time.perf_counter() - started
            walls.append(wall)
            stages = {m["name"]: float(m["secs"]) for line in result.stderr.splitlines()
                      if (m := STAGE_LINE.match(line))}
            marks = milestones(host.cli("vm", "logs", name).stdout)
            print(f"run {i + 1}: vm create until SSH {wall:6.1f} s   "
                  + "   ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
            print("        guest clock: " + "   ".join(f"{k} {v:.1f} s" for k, v in marks.items()))
            host.cli("vm", "delete", "--force", name, timeout=300)
    print(f"banger-fcqemu ({accel}: {why}), {args.cpus} vCPU, {args.memory} MiB, "
          f"{args.runs} run(s): time to SSH median {statistics.median(walls):.1f} s, "
          f"min {min(walls):.1f} s, max {max(walls):.1f} s")


if __name__ == "__main__":
    main()
