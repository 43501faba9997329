"""The dns plugin's hooks. Cheap to import: the CLI loads this module.

Daemon-side code (the server, dnslib) is imported inside the hooks.
"""

from __future__ import annotations

from typing import Any

from banger_core import hookimpl

NAME = "dns"


@hookimpl
def banger_config_defaults() -> dict[str, Any]:
    from banger_core import Option

    return {
        "listen": Option(
            "127.0.0.1:42069",
            "host-facing listener (ADDRESS:PORT, UDP and TCP) authoritative for .vm",
        ),
        "ttl": Option(5, "TTL of .vm answers, in seconds"),
        "guest_listener": Option(
            True,
            "also listen on the bridge gateway, port 53, for guests "
            "(answers .vm, forwards other names upstream) and make "
            "it the guests' nameserver",
        ),
        "upstreams": Option(
            [],
            "resolvers the guest listener forwards to (ADDRESS or "
            "ADDRESS:PORT); empty: the host's, from resolv_conf",
            type=list,
        ),
        "resolv_conf": Option(
            "/etc/resolv.conf",
            "where the host's resolvers are read from (resolved's stub is looked through)",
        ),
        "resolvectl": Option("resolvectl", "the resolvectl program `banger dns setup` runs"),
        "resolved_dir": Option(
            "/run/systemd/resolve",
            "systemd-resolved's runtime directory (`banger dns setup` checks it exists)",
        ),
    }


@hookimpl
def banger_cli_commands() -> list[Any]:
    from banger_dns.cli import dns

    return [dns]


@hookimpl
def banger_rpc_methods() -> dict[str, Any]:
    from banger_dns import service

    return {"dns.list": service.list_records, "dns.info": service.info}


@hookimpl
def banger_daemon_started(daemon: Any) -> None:
    from banger_dns import service

    service.start(daemon)


@hookimpl
def banger_daemon_stopping(daemon: Any) -> None:
    from banger_dns import service

    service.stop()


@hookimpl
def banger_daemon_status(daemon: Any) -> dict[str, Any]:
    from banger_dns import service

    return service.describe()


@hookimpl
def banger_doctor_checks(ctx: Any) -> list[Any]:
    from banger_core import Check
    from banger_dns import service

    status = service.describe()
    failed = [line for line in status["listeners"] if "failed" in line or "not started" in line]
    checks = [
        Check(
            "dns listeners",
            not failed,
            "; ".join(status["listeners"]),
            fix="free the address or change [plugins.dns] listen / guest_listener",
        )
    ]
    if not getattr(ctx, "preflight", False):
        ok, detail = service.resolves_from_host()
        checks.append(
            Check(
                "dns .vm from the host",
                ok,
                detail,
                fix="run `banger dns setup` (see the user guide, DNS)",
            )
        )
    return checks


@hookimpl
def banger_vm_configure(vm: Any, machine: Any, guest: Any) -> None:
    from banger_dns import service

    gateway = service.guest_nameserver()
    if gateway:
        guest.nameservers = [gateway] + [s for s in guest.nameservers if s != gateway]


@hookimpl
def banger_vm_started(vm: Any) -> None:
    from banger_dns import service

    service.publish(vm)


@hookimpl
def banger_vm_stopped(vm: Any) -> None:
    from banger_dns import service

    service.withdraw(vm)


@hookimpl
def banger_vm_deleted(vm: Any) -> None:
    from banger_dns import service

    service.withdraw(vm)


@hookimpl
def banger_reconcile(vms: list[Any]) -> None:
    from banger_dns import service

    service.rebuild(vms)


@hookimpl
def banger_vm_dns_names(vm: Any) -> list[str]:
    from banger_dns import service

    return service.names(vm)
