"""Build the daemon's services (store, VM manager, images) and their RPC methods.

Kept apart from the RPC server so the server stays a small, testable piece.
"""

from __future__ import annotations

from typing import Any


def build_services(daemon: Any) -> None:
    """Open the store and register the VM and image methods on ``daemon``."""
    from banger_core.store import open_store

    daemon.store = open_store(daemon.paths.db)
