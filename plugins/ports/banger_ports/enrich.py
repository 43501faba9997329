"""Turning the agent's listener list into ``vm ports`` rows."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Probe = Callable[[str, int], str]


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _is_wildcard(address: str, vm_ip: str) -> bool:
    return address in ("0.0.0.0", "::", vm_ip)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def rows(
    listeners: list[dict[str, Any]], host: str, vm_ip: str, probe: Probe
) -> list[dict[str, Any]]:
    """One row per distinct (PROTO, ENDPOINT), web endpoints as ``http(s)://host:port/``.

    :param host: what the user reaches the VM by (``web.vm``, else its IP).
    :param probe: ``probe(ip, port) -> "https" | "http" | "tcp"``; called once
        per reachable TCP port, concurrently.
    """
    reachable = sorted(
        {
            s["port"]
            for s in listeners
            if s.get("proto") == "tcp" and _is_wildcard(s.get("address", ""), vm_ip)
        }
    )
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(reachable)))) as pool:
        kinds = dict(
            zip(reachable, pool.map(lambda port: probe(vm_ip, port), reachable), strict=True)
        )
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for sock in sorted(
        listeners, key=lambda s: (s.get("port", 0), s.get("proto", ""), s.get("family", ""))
    ):
        proto, address, port = sock.get("proto", "tcp"), sock.get("address", ""), sock["port"]
        if _is_wildcard(address, vm_ip):
            kind = kinds.get(port, proto) if proto == "tcp" else proto
            endpoint = (
                f"{kind}://{_hostport(host, port)}/"
                if kind in ("http", "https")
                else _hostport(host, port)
            )
        else:
            kind = proto
            endpoint = _hostport(address, port)
        key = (kind, endpoint)
        if key in seen:
            continue
        seen.add(key)
        out.append(
            {
                "proto": kind,
                "endpoint": endpoint,
                "address": address,
                "port": port,
                "guest_only": _is_loopback(address),
                "pid": sock.get("pid"),
                "process": sock.get("process") or "",
                "command": sock.get("command") or "",
            }
        )
    return out
