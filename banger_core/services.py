"""Build the daemon's services (store, host network, images, VMs) and their RPC methods.

Kept apart from the RPC server so the server stays a small, testable piece.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from banger_core.config import Settings
    from banger_core.plugins import Hooks

WATCH_INTERVAL = 2.0  # seconds between checks for VMMs that died


def watch_interval() -> float:
    """Seconds between crash checks (``BANGER_WATCH_INTERVAL`` lets tests force orderings)."""
    return float(os.environ.get("BANGER_WATCH_INTERVAL") or WATCH_INTERVAL)


class LifecycleService:
    """Starts the host network and reconciles VMs when the daemon starts."""

    def __init__(self, settings: Settings, hooks: Hooks, store: object = None) -> None:
        from banger_core.firecracker.transport import vmm_version
        from banger_core.images.registry import ImageService
        from banger_core.lifecycle.hostnet import HostNetwork
        from banger_core.lifecycle.manager import VMManager

        self.store = store
        self.network = HostNetwork(settings)
        self.images = ImageService(
            settings, hooks, lambda: vmm_version(settings.get("firecracker", "binary"))
        )
        self.vms = VMManager(settings, hooks, self.images, self.network)
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


def build_services(settings: Settings, hooks: Hooks) -> LifecycleService:
    """Open the store and build the host network, image and VM services over it.

    The daemon keeps what it gets back (and registers the services' RPC
    methods itself); nothing is attached to it from here.
    """
    from banger_core.store import open_store

    return LifecycleService(settings, hooks, open_store(settings.paths.db))
