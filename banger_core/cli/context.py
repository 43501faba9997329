"""Reaching the daemon from the CLI: :mod:`banger_core.rpc.connect` (kept importable here).

Plugins call ``banger_core.rpc(method, params)`` and ``banger_core.connect()``;
this path, which earlier guides named, keeps working through this release.
"""

from __future__ import annotations

from banger_core.rpc.connect import (
    START_TIMEOUT,
    connect,
    daemon_ready,
    daemon_running,
    rpc,
    start_daemon,
)

__all__ = ["START_TIMEOUT", "connect", "daemon_ready", "daemon_running", "rpc", "start_daemon"]
