"""The daemon's host network: the bridge, the TAP pool, address allocation."""

from __future__ import annotations

from typing import Any

from loguru import logger

from banger_core.net import host, ipam
from banger_core.net.tappool import TapPool

TAP_PREFIX = "bgtap"


class HostNetwork:
    """Bridge + idle TAP pool, created when the daemon starts."""

    def __init__(self, settings: Any) -> None:
        self.bridge = settings.get("network", "bridge")
        gateway = settings.get("network", "gateway") or None
        self.subnet = ipam.Subnet(settings.get("network", "subnet"), gateway)
        self.nameservers = list(settings.get("network", "nameservers"))
        self.pool = TapPool(
            self.bridge, settings.get("network", "tap_pool_size"), prefix=TAP_PREFIX
        )

    def start(self, in_use: set[str]) -> None:
        """Create the bridge, adopt existing TAPs, fill the pool."""
        host.ensure_bridge(self.bridge, self.subnet.gateway_cidr)
        self.pool.adopt(in_use)
        self.pool.fill()
        logger.info(
            "bridge {} {} with {} idle TAPs",
            self.bridge,
            self.subnet.gateway_cidr,
            len(self.pool.idle()),
        )

    def acquire_tap(self) -> str:
        """A TAP on the bridge, from the pool when one is idle."""
        return self.pool.acquire()

    def release_tap(self, name: str | None) -> None:
        """Give a VM's TAP back (kept idle or deleted)."""
        if not name:
            return
        try:
            self.pool.release(name)
        except Exception as exc:
            logger.warning("releasing TAP {} failed: {}", name, exc)
            host.delete_link(name)

    def allocate_ip(self, used: set[str]) -> str:
        """The lowest free address in the subnet."""
        return ipam.allocate(self.subnet, used)

    def describe(self) -> dict[str, Any]:
        """For ``daemon status``."""
        return {
            "bridge": self.bridge,
            "subnet": self.subnet.cidr,
            "idle_taps": len(self.pool.idle()),
            "taps_in_use": len(self.pool.in_use()),
        }

    def stop(self) -> None:
        """Delete idle TAPs; TAPs of running VMs stay."""
        self.pool.close(delete_idle=True)
