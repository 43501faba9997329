"""``banger-fcsim``: a Firecracker simulator with Firecracker's command line.

The process, its flags and its API are the shared Firecracker-compatible
layer (:func:`banger_vmmkit.main.main`); the guest is the simulated one
(:class:`banger_fcsim.guest.Guest`). Extra simulator-only modes:

* ``banger-fcsim --cleanup [--all | --id ID]``: remove leftovers of dead
  simulators recorded under ``$BANGER_FCSIM_RUN_DIR``;
* ``--watchdog STATE --watch-pid PID`` (internal): wait for PID to die, then
  remove what STATE records.

See ``docs/simulator.md``.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from pathlib import Path

from banger_vmmkit.main import EXIT_ARG_PARSING, EXIT_OK
from banger_vmmkit.main import main as vmm_main

FCSIM_USAGE = "       banger-fcsim --cleanup [--all | --id ID]\n"


def watchdog(state_path: str, pid: int) -> int:
    """Wait for ``pid`` to die, then remove what ``state_path`` records."""
    from banger_fcsim.state import cleanup_state

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    path = Path(state_path)
    try:
        pidfd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        pidfd = None
    while path.exists():
        if pidfd is None:
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.2)
            continue
        ready, _, _ = select.select([pidfd], [], [], 0.5)
        if ready:
            break
    # Give a dying simulator's own cleanup (signal handler) a moment to finish.
    deadline = time.monotonic() + 15
    while path.exists() and time.monotonic() < deadline:
        if cleanup_state(path):
            break
        time.sleep(0.1)
    return 0


def simulator_modes(args: dict[str, str | bool]) -> int | None:
    """Run ``--watchdog`` or ``--cleanup`` and return the exit code; None otherwise."""
    if "watchdog" in args:
        return watchdog(str(args["watchdog"]), int(str(args.get("watch-pid", "0"))))
    if args.get("cleanup"):
        from banger_fcsim.state import cleanup_leftovers

        vm_id = str(args["id"]) if "id" in args else None
        if not args.get("all") and vm_id is None:
            sys.stderr.write("banger-fcsim --cleanup needs --all or --id ID\n")
            return EXIT_ARG_PARSING
        for line in cleanup_leftovers(vm_id=vm_id, all_=bool(args.get("all"))):
            print(line)
        return EXIT_OK
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``banger-fcsim``."""
    from banger_fcsim.guest import Guest

    return vmm_main(
        argv,
        prog="banger-fcsim",
        title="Firecracker simulator (banger-fcsim)",
        guest_class=Guest,
        extra_usage=FCSIM_USAGE,
        extra_modes=simulator_modes,
    )


if __name__ == "__main__":
    sys.exit(main())
