"""The daemon side of banger-dns: the zone of running VMs and the server that answers it.

Imported by ``bangerd`` only. The zone exists from import on, so lifecycle
hooks that run before the server starts (reconcile at daemon start-up) still
publish; the server answers from the same zone once it listens.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from banger_core import Access, ValidationError, rpc_access
from banger_dns.server import DNSServer, Listener
from banger_dns.upstreams import host_upstreams, parse_server
from banger_dns.zone import DOMAIN, Zone

NAME = "dns"
GUEST_PORT = 53

ZONE = Zone()
_state: dict[str, Any] = {"server": None, "config": {}, "gateway": None}


def gateway_address(settings: Any) -> str:
    """The bridge's address: ``[network] gateway`` or the subnet's first host."""
    configured = settings.get("network", "gateway")
    if configured:
        return str(configured)
    subnet = ipaddress.ip_network(settings.get("network", "subnet"), strict=False)
    return str(next(subnet.hosts()))


def upstream_servers(config: dict[str, Any]) -> list[tuple[str, int]]:
    """``[plugins.dns] upstreams``, or the host's resolvers from ``resolv_conf``."""
    configured = list(config.get("upstreams") or [])
    names = configured or host_upstreams(Path(config.get("resolv_conf", "/etc/resolv.conf")))
    servers = []
    for text in names:
        try:
            servers.append(parse_server(str(text)))
        except ValueError:
            raise ValidationError(
                f"[plugins.dns] upstreams: {text!r} is not an IPv4 address or ADDRESS:PORT"
            ) from None
    return servers


def start(daemon: Any) -> DNSServer:
    """Start the listeners described by ``[plugins.dns]``."""
    stop()
    config = daemon.config
    ZONE.ttl = int(config["ttl"])
    host, port = parse_server(config["listen"], default_port=42069)
    listeners = [Listener(host, port)]
    gateway = gateway_address(daemon.settings) if config["guest_listener"] else None
    if gateway:
        listeners.append(Listener(gateway, GUEST_PORT, recursion=True))
    server = DNSServer(ZONE, listeners, upstream_servers(config) if gateway else [])
    server.start()
    _state.update(
        server=server,
        config=config,
        gateway=gateway,
        bridge=daemon.settings.get("network", "bridge"),
    )
    return server


def stop() -> None:
    """Stop the listeners (nothing to do when they never started)."""
    server = _state.get("server")
    if server is not None:
        server.stop()
    _state["server"] = None


def describe() -> dict[str, Any]:
    """For ``banger daemon status``."""
    server = _state.get("server")
    if server is None:
        return {"listeners": ["(not started)"], "records": len(ZONE.records())}
    described: dict[str, Any] = server.describe()
    return described


def guest_nameserver() -> str | None:
    """The gateway address guests should use, when its listener is up."""
    server = _state.get("server")
    if server is None or not _state.get("gateway"):
        return None
    guest = next((lst for lst in server.listeners if lst.recursion), None)
    return _state["gateway"] if guest is not None and not guest.error else None


def publish(vm: Any) -> None:
    """Add ``<vm.name>.vm``."""
    ZONE.set(vm.name, vm.ip)


def withdraw(vm: Any) -> None:
    """Remove ``<vm.name>.vm`` (missing is fine)."""
    ZONE.remove(vm.name)


def rebuild(vms: list[Any]) -> None:
    """Make the zone exactly the running VMs."""
    ZONE.replace({vm.name: vm.ip for vm in vms if vm.state == "running"})


def names(vm: Any) -> list[str]:
    """``["<name>.vm"]`` while the VM is published."""
    return [f"{vm.name}.{DOMAIN}"] if vm.name.lower() in ZONE.records() else []


@rpc_access(Access.MEMBER)
def list_records(params: dict[str, Any], call: Any) -> dict[str, Any]:
    """``dns.list``: every record, and where the server listens."""
    records = [
        {"name": f"{name}.{DOMAIN}", "type": "A", "address": address, "ttl": ZONE.ttl}
        for name, address in sorted(ZONE.records().items())
    ]
    return {**describe(), "records": records}


@rpc_access(Access.MEMBER)
def info(params: dict[str, Any], call: Any) -> dict[str, Any]:
    """``dns.info``: what ``banger dns setup`` needs to point the host at the server."""
    config = _state.get("config") or {}
    return {
        "listen": config.get("listen", ""),
        "gateway": guest_nameserver(),
        "bridge": _state.get("bridge"),
        "domain": DOMAIN,
        "resolvectl": config.get("resolvectl", "resolvectl"),
        "resolved_dir": config.get("resolved_dir", "/run/systemd/resolve"),
        **describe(),
    }


def resolves_from_host(timeout: float = 4.0) -> tuple[bool, str]:
    """Does the host's resolver find a ``.vm`` name? Checked with a probe record.

    A throw-away record (``doctor-<random>.vm`` -> 127.0.0.1) is published for
    the duration of one ``getent`` lookup, so the answer is a real round trip
    through whatever the host's resolver is configured to use.
    """
    import secrets

    from banger_core import CommandError, run

    probe = f"doctor-{secrets.token_hex(4)}"
    ZONE.set(probe, "127.0.0.1")
    try:
        result = run(["getent", "ahostsv4", f"{probe}.{DOMAIN}"], check=False, timeout=timeout)
    except CommandError as exc:
        return False, f"{probe}.{DOMAIN}: {exc}"
    finally:
        ZONE.remove(probe)
    if result.returncode == 0 and "127.0.0.1" in result.stdout:
        return True, f"{probe}.{DOMAIN} resolves through the host's resolver"
    return False, (
        f"{probe}.{DOMAIN} does not resolve from the host (getent exit {result.returncode})"
    )
