"""Build the daemon's services (store, host network, images, VMs) and their RPC methods.

Kept apart from the RPC server so the server stays a small, testable piece.
"""

from __future__ import annotations

import os
import threading
from typing import Any

WATCH_INTERVAL = 2.0  # seconds between checks for VMMs that died


def watch_interval() -> float:
    """Seconds between crash checks (``BANGER_WATCH_INTERVAL`` lets tests force orderings)."""
    return float(os.environ.get("BANGER_WATCH_INTERVAL") or WATCH_INTERVAL)


class LifecycleService:
    """Starts the host network and reconciles VMs when the daemon starts."""

    def __init__(self, daemon: Any) -> None:
        from banger_core.images.registry import ImageService
        from banger_core.lifecycle.hostnet import HostNetwork
        from banger_core.lifecycle.manager import VMManager

        self.daemon = daemon
        self.network = HostNetwork(daemon.settings)
        self.images = ImageService(daemon)
        self.vms = VMManager(daemon, self.images, self.network)
        self._stop = threading.Event()

    def start(self) -> None:
        """Bridge, TAP pool, reconcile, then watch for VMMs that die."""
        self.network.start(self.vms.taps_in_use())
        self.vms.reconcile()
        self._watcher = threading.Thread(target=self._watch, name="vm-watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        from loguru import logger

        interval = watch_interval()
        while not self._stop.wait(interval):
            try:
                self.vms.check_crashed()
            except Exception:
                logger.exception("checking for crashed VMs failed")

    def stop(self) -> None:
        """Idle TAPs go; running VMs keep theirs."""
        self._stop.set()
        self.network.stop()

    def describe(self) -> dict[str, Any]:
        """For ``daemon status``."""
        return self.network.describe()


def build_services(daemon: Any) -> None:
    """Open the store and register the VM and image methods on ``daemon``."""
    from banger_core.lifecycle import rpc
    from banger_core.store import open_store

    daemon.store = open_store(daemon.paths.db)
    service = LifecycleService(daemon)
    daemon.services["network"] = service
    daemon.vms = service.vms
    daemon.images = service.images
    rpc.register(daemon, service.vms, service.images)
