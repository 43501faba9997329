"""The vsock plugin's hooks. Cheap to import: the CLI loads this module.

Every VM gets a hybrid vsock device (a unique guest CID, the Unix socket
``vsock.sock`` in its runtime directory); ``vm create``/``vm start`` wait for
the guest agent's ``/healthz`` after SSH; the daemon serves ``vm.health``,
``vm.agent`` and ``vm.agent_connect``; the CLI gets ``vm exec``, ``vm cp``
and ``vm health``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from banger_core import hookimpl

NAME = "vsock"
FIRST_CID = 3  # 0-2 are reserved (hypervisor, local, host)


def agent_port(config: Any) -> int:
    """The guest agent's vsock port from ``[plugins.vsock]``."""
    return int(config.get("agent_port", 1024))


def _config(ctx: Any) -> Any:
    return ctx.config


def cid_for(vm: Any) -> int:
    """The VM's guest CID: unique and stable, derived from its address in the VM subnet.

    The core gives every VM its own IP for its whole life, so the offset in
    the subnet is unique among VMs without any bookkeeping of our own.
    """
    import ipaddress

    iface = ipaddress.ip_interface(f"{vm.ip}/{vm.prefixlen}")
    return FIRST_CID + int(iface.ip) - int(iface.network.network_address)


@hookimpl
def banger_config_defaults() -> dict[str, Any]:
    from banger_core import Option

    return {
        "agent_port": Option(1024, "the guest agent's vsock port"),
        "health_timeout_seconds": Option(
            30.0, "how long vm create/start wait for the agent after SSH answered"
        ),
    }


@hookimpl
def banger_image_provision(image: dict[str, Any], steps: list[Any]) -> None:
    """Install the guest agent and its unit into every image built."""
    from banger_vsock.guest import provision_steps

    steps.extend(provision_steps())


@hookimpl
def banger_doctor_checks(ctx: Any) -> list[Any]:
    from banger_vsock.doctor import vhost_vsock_check

    return [vhost_vsock_check(ctx.settings)]


@hookimpl
def banger_vm_create(vm: Any, ctx: Any) -> None:
    vm.plugin_state(NAME).update(
        {"cid": cid_for(vm), "port": agent_port(_config(ctx)), "uds_path": str(vm.vsock_path)}
    )


@hookimpl
def banger_vm_configure(vm: Any, machine: Any, guest: Any) -> None:
    from banger_core import Vsock

    state = vm.plugin_state(NAME)
    # A VM created before this plugin was installed gets its device at its next boot.
    state.setdefault("cid", cid_for(vm))
    state.setdefault("port", 1024)
    state.setdefault("uds_path", str(vm.vsock_path))
    path = Path(vm.vsock_path)
    path.unlink(missing_ok=True)  # the VMM binds it and refuses an existing file
    machine.vsock = Vsock(guest_cid=int(state["cid"]), uds_path=str(path))
    guest.agent_vsock_port = int(state.get("port", 1024))


@hookimpl
def banger_vm_ready_checks(vm: Any, ctx: Any) -> list[Any]:
    from banger_core import ReadyCheck
    from banger_vsock.hostconn import wait_healthy

    config = _config(ctx)
    port = int(vm.plugin_state(NAME).get("port", agent_port(config)))

    def wait(timeout: float, cancelled: Any) -> str:
        body = wait_healthy(vm.vsock_path, port, timeout, cancelled)
        return f"agent {body.get('agent_version')} answered"

    return [
        ReadyCheck(
            "waiting for agent",
            wait,
            timeout=float(config.get("health_timeout_seconds", 30.0)),
            detail=f"vsock port {port}",
        )
    ]


@hookimpl
def banger_vm_stopped(vm: Any) -> None:
    Path(vm.vsock_path).unlink(missing_ok=True)


@hookimpl
def banger_reconcile(vms: list[Any]) -> None:
    # A stopped VM's socket file is a leftover (the VMM leaves it behind).
    for vm in vms:
        if vm.state not in ("running", "starting", "stopping", "creating"):
            Path(vm.vsock_path).unlink(missing_ok=True)


@hookimpl
def banger_rpc_methods() -> dict[str, Any]:
    from banger_vsock import rpc

    return rpc.METHODS


@hookimpl
def banger_cli_subcommands() -> dict[str, list[Any]]:
    from banger_vsock import cli

    return {"vm": [cli.exec_, cli.cp, cli.health]}
