"""Median ``banger vm create`` time on the simulated host, and each stage's share.

Runs the real CLI against a daemon on the Firecracker simulator (no boot
delay) with the cached Debian image, creating and deleting VMs one after
another. Needs root. Usage: ``python bench/create.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

from pytest_banger.images import cached_debian_image
from pytest_banger.simhost import SimulatedHost

STAGE_LINE = re.compile(r"^\s+(?P<name>[a-zA-Z][\w ]*?)\s+(?P<secs>\d+\.\d+)s\s+ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    image = cached_debian_image()
    walls: list[float] = []
    stages: dict[str, list[float]] = {}
    with SimulatedHost(tap_pool_size=4) as host:
        host.start()
        host.register_image(image)
        host.cli("vm", "create", "warmup", "--memory", "256")  # SSH key, caches
        host.cli("vm", "delete", "--force", "warmup")
        for i in range(args.runs):
            name = f"bench{i}"
            started = time.perf_counter()
            result = host.cli("vm", "create", name, "--memory", "256")
            walls.append(time.perf_counter() - started)
            for line in result.stderr.splitlines():
                match = STAGE_LINE.match(line)
                if match:
                    stages.setdefault(match["name"], []).append(float(match["secs"]))
            host.cli("vm", "delete", "--force", name)
    median = statistics.median(walls)
    print(f"vm create on the simulator, {args.runs} runs (CLI wall time, until SSH answers)")
    print(
        f"  median {median * 1000:7.1f} ms   min {min(walls) * 1000:7.1f} ms   "
        f"max {max(walls) * 1000:7.1f} ms"
    )
    total = sum(statistics.median(v) for v in stages.values())
    print("  stage               median     share")
    for name, values in stages.items():
        m = statistics.median(values)
        print(f"  {name:<18} {m * 1000:7.1f} ms  {m / total * 100:5.1f}%")
    print(f"  (stages sum {total * 1000:.1f} ms; the rest is CLI start-up and RPC polling)")


if __name__ == "__main__":
    main()
