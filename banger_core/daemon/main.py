"""``bangerd``: run the banger daemon in the foreground.

``banger daemon start`` (and any command that needs the daemon) starts it in
the background; run it directly under a service manager or for debugging.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from banger_core.errors import BangerError
from banger_core.net.namespaces import HOST_NETNS_FD_ENV


def enter_netns(name: str, argv: list[str]) -> None:
    """Re-run bangerd inside network namespace ``name`` (created if missing).

    Used for the simulated host: the bridge, TAPs and VMs then live in a
    namespace of their own and the machine's own network is never touched.
    """
    from banger_core import system
    from banger_core.net.namespaces import ensure_netns, in_netns

    if in_netns(name):
        return
    ensure_netns(name)
    # Keep a handle on the machine's own namespace: image builds fetch
    # packages from the configured apt sources through it.
    host_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
    os.set_inheritable(host_ns, True)
    os.environ[HOST_NETNS_FD_ENV] = str(host_ns)
    system.exec_replace(
        ["ip", "netns", "exec", name, sys.executable, "-m", "banger_core.daemon.main", *argv]
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bangerd`` console script."""
    parser = argparse.ArgumentParser(prog="bangerd", description=__doc__)
    parser.add_argument("--log-level", help="override the configured log level")
    parser.add_argument("--stderr", action="store_true", help="also log to stderr")
    args = parser.parse_args(argv)
    try:
        from banger_core.daemon.app import build_daemon
        from banger_core.daemon.logging import setup_logging

        daemon = build_daemon()
        netns = daemon.settings.get("daemon", "netns")
        if netns:
            enter_netns(netns, argv if argv is not None else sys.argv[1:])
        level = args.log_level or daemon.settings.get("daemon", "log_level")
        daemon.paths.ensure()
        setup_logging(daemon.paths.daemon_log, level, to_stderr=args.stderr)
        asyncio.run(daemon.run())
    except BangerError as exc:
        print(f"bangerd: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
