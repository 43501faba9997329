"""CLI start-up cost: median wall time of ``banger --help``, of ``banger vm list`` and of a
``banger daemon status`` round trip, beside ``python -c pass`` and ``python -c "import
click"``, in one run. The goal: a core command within 1.3 times an import of click (the
CLI's start-up cache keeps plugins and entry-point discovery out of core commands).

The daemon is started in a throwaway ``BANGER_STATE_DIR`` (as root its
network lives in a network namespace of its own) and stopped, by PID, at the
end. Run with ``make bench`` or ``.venv/bin/python bench/cli_startup.py``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from banger_core import system
from banger_core.rpc.client import RPCClient


def script(name: str) -> list[str]:
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return [str(candidate)]
    module = {"banger": "banger_core.cli.main", "bangerd": "banger_core.daemon.main"}[name]
    return [sys.executable, "-m", module]


def median_ms(argv: list[str], env: dict[str, str], runs: int) -> float:
    """Median wall time of ``runs`` runs of ``argv`` (after one warm-up run)."""
    system.run(argv, env=env, timeout=60)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        system.run(argv, env=env, timeout=60)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def start_daemon(env: dict[str, str], socket: Path, log: Path):
    with open(log, "ab") as out:
        proc = system.spawn(script("bangerd"), stdout=out, stderr=out, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bangerd exited with {proc.returncode}: {log.read_text()}")
        try:
            with RPCClient(socket, timeout=5) as client:
                if client.call("daemon.status").get("ready", True):
                    return proc
        except Exception:
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("bangerd did not start")


def stop(proc) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except Exception:
            proc.kill()
            proc.wait(timeout=5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per command (default 20)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="banger-bench-"))
    netns = f"bgr-bench-{secrets.token_hex(3)}" if os.geteuid() == 0 else ""
    config = root / "config.toml"
    config.write_text(
        f'[daemon]\nnetns = "{netns}"\n[network]\nbridge = "bgbr0"\n' if netns else ""
    )
    env = {
        "BANGER_STATE_DIR": str(root / "state"),
        "BANGER_CONFIG": str(config),
        "BANGER_PLUGINS": os.environ.get("BANGER_PLUGINS", ""),
        "BANGER_DISABLE_PLUGINS": os.environ.get("BANGER_DISABLE_PLUGINS", ""),
        "BANGER_TRACE_PLUGINS": "",
        "XDG_CACHE_HOME": str(root / "cache"),
        # An installed banger has its bytecode compiled (pip does it), like click: measure
        # that, even when the caller's environment forbids writing .pyc files (the
        # warm-up run writes them).
        "PYTHONDONTWRITEBYTECODE": "",
    }
    (root / "state").mkdir()
    proc = None
    try:
        results = {
            "python -c pass": median_ms([sys.executable, "-c", "pass"], env, args.runs),
            "import click": median_ms([sys.executable, "-c", "import click"], env, args.runs),
            "banger --help": median_ms(script("banger") + ["--help"], env, args.runs),
        }
        proc = start_daemon(env, root / "state" / "run" / "bangerd.sock", root / "bangerd.out")
        results["banger vm list"] = median_ms(script("banger") + ["vm", "list"], env, args.runs)
        results["banger daemon status"] = median_ms(
            script("banger") + ["daemon", "status"], env, args.runs
        )
    finally:
        if proc is not None:
            stop(proc)
        if netns:
            from banger_core.net.namespaces import delete_netns

            delete_netns(netns, runner=lambda argv, **kw: system.run(argv, check=False))
        shutil.rmtree(root, ignore_errors=True)

    print(f"median wall time of {args.runs} runs each (python {sys.version.split()[0]})")
    base = results["python -c pass"]
    click_ms = results["import click"]
    for name, ms in results.items():
        extra = "" if name == "python -c pass" else f"  (+{ms - base:.0f} ms over python)"
        if name.startswith("banger"):
            extra += f"  {ms / click_ms:.2f}x import click, {ms / base:.2f}x python"
        print(f"  {name:<22} {ms:7.1f} ms{extra}")
    print(
        f"goal: core commands within 1.3x import click "
        f"(vm list: {results['banger vm list'] / click_ms:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
