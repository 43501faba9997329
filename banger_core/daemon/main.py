"""``bangerd``: run the banger daemon in the foreground.

``banger daemon start`` (and any command that needs the daemon) starts it in
the background; run it directly under a service manager or for debugging.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from banger_core.errors import BangerError


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
