"""Which interface leads out: the default route's, or ``[plugins.nat] uplink``.

Looked up in the daemon's network namespace (where the bridge lives) with
pyroute2, at every VM start, so a host that gains or loses its default route
is followed.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Uplink:
    """The uplink interface, or why there is none."""

    name: str | None
    reason: str = ""


def find_uplink(configured: str = "") -> Uplink:
    """The configured interface when it exists, else the IPv4 default route's."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        if configured:
            if ipr.link_lookup(ifname=configured):
                return Uplink(configured)
            return Uplink(None, f"[plugins.nat] uplink {configured!r} does not exist")
        for route in ipr.get_default_routes(family=socket.AF_INET):
            oif = route.get_attr("RTA_OIF")
            if oif is None:
                for hop in route.get_attr("RTA_MULTIPATH") or []:
                    oif = hop.get("oif")
                    if oif:
                        break
            if oif:
                links = ipr.get_links(oif)
                if links:
                    return Uplink(links[0].get_attr("IFLA_IFNAME"))
    return Uplink(
        None, "no IPv4 default route in the daemon's network namespace (set [plugins.nat] uplink)"
    )
