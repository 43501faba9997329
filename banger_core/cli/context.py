"""Reaching the daemon from the CLI: :mod:`banger_core.rpc.connect` (kept importable here).

Plugins call ``banger_core.rpc(method, params)`` and ``banger_core.connect()``;
this path, which earlier guides named, keeps working through this release.
"""

from __future__ import annotations

from banger_core.rpc.connect import (
    START_TIMEOUT,
    STARTED_BY_ENV,
    check_daemon_version,
    connect,
    daemon_ready,
    daemon_running,
    rpc,
    skip_version_check,
    start_daemon,
)

__all__ = [
    "STARTED_BY_ENV",
    "START_TIMEOUT",
    "check_daemon_version",
    "connect",
    "daemon_ready",
    "daemon_running",
    "rpc",
    "skip_version_check",
    "start_daemon",
]
