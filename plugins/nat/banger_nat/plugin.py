"""The nat plugin's hooks. Cheap to import: the CLI loads this module.

Daemon-side code (pyroute2, iptables) is imported inside the hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from banger_core import hookimpl

if TYPE_CHECKING:
    from banger_core import Check, DaemonAPI, DoctorContext

NAME = "nat"


@hookimpl
def banger_config_defaults() -> dict[str, Any]:
    from banger_core import Option

    return {
        "default": Option(True, "NAT for VMs that do not choose (vm create --nat/--no-nat)"),
        "uplink": Option("", "interface VMs go out through; empty: the default route's"),
        "allow": Option(
            [], "egress allow-list for every VM (CIDR or CIDR:PORT); empty: anything", type=list
        ),
    }


@hookimpl
def banger_vm_options() -> list[Any]:
    from banger_core import VMOption

    def check_allow(value: Any) -> Any:
        from banger_nat.egress import parse_all

        return [str(e) for e in parse_all(list(value), "--egress-allow")]

    return [
        VMOption(
            "nat",
            "bool",
            default=True,
            config_key="default",
            help="reach the outside world through NAT on the host's uplink",
        ),
        VMOption(
            "egress-allow",
            "list",
            default=[],
            validator=check_allow,
            metavar="CIDR",
            help="allow only this destination out: CIDR or CIDR:PORT (repeat; adds to "
            "[plugins.nat] allow)",
        ),
    ]


@hookimpl
def banger_daemon_started(daemon: DaemonAPI) -> None:
    from banger_nat import service

    service.check_config(dict(daemon.config))


@hookimpl
def banger_daemon_status(daemon: DaemonAPI) -> dict[str, Any]:
    from banger_nat import service

    return service.describe(dict(daemon.config), daemon.runner)


# A failing NAT check stops the creates and starts of VMs that use NAT (--nat, the default).
NEEDS_NAT = ("vm.create --nat", "vm.start --nat")


@hookimpl
def banger_doctor_checks(ctx: DoctorContext) -> list[Check]:
    from banger_core import Check
    from banger_nat import service
    from banger_nat.egress import parse_all

    config = ctx.config
    iptables = ctx.which("iptables")
    checks = [
        Check(
            "program iptables",
            bool(iptables),
            iptables or "not found",
            fix="apt install iptables  (needed for NAT)",
            needed_by=NEEDS_NAT,
        )
    ]
    link = service.uplink(config)
    checks.append(
        Check(
            "nat uplink",
            link.name is not None,
            link.name or f"NAT is off: {link.reason}",
            fix="give the host a default route or set [plugins.nat] uplink",
        )
    )
    try:
        allow = parse_all([str(e) for e in config.get("allow") or []], "[plugins.nat] allow")
        checks.append(
            Check(
                "nat egress allow-list",
                True,
                ", ".join(map(str, allow)) or "(none: VMs may reach anything)",
            )
        )
    except Exception as exc:
        checks.append(
            Check(
                "nat egress allow-list",
                False,
                str(exc),
                fix="use CIDR or CIDR:PORT entries in [plugins.nat] allow",
                needed_by=NEEDS_NAT,
            )
        )
    return checks


@hookimpl
def banger_vm_started(vm: Any, ctx: Any) -> None:
    from banger_nat import service

    service.publish(vm, ctx.config, ctx.settings.get("network", "bridge"), ctx.runner)


@hookimpl
def banger_vm_stopped(vm: Any, ctx: Any) -> None:
    from banger_nat import service

    service.withdraw(vm, ctx.runner)


@hookimpl
def banger_vm_deleted(vm: Any, ctx: Any) -> None:
    from banger_nat import service

    service.withdraw(vm, ctx.runner)


@hookimpl
def banger_reconcile(vms: list[Any], ctx: Any) -> None:
    from banger_nat import service

    service.reconcile(vms, ctx.runner)
