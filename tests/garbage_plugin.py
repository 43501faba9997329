"""A plugin that returns the wrong type from every hook (tests of a misbehaving plugin).

Installed on a simulated host (``host.install_plugin("garbage", "banger_garbage", DIR)``
with this file copied as ``DIR/banger_garbage.py``) or registered in-process.
"""

from __future__ import annotations

from typing import Any

from banger_core import hookimpl

#: the wrong result each hook returns
GARBAGE: dict[str, Any] = {
    "banger_config_defaults": ["not", "a", "mapping"],
    "banger_cli_commands": "not-a-command-list",
    "banger_cli_subcommands": {"vm": "not-a-list", "image": [42]},
    "banger_daemon_started": 42,
    "banger_daemon_stopping": 42,
    "banger_daemon_status": 42,
    "banger_rpc_methods": ["garbage.method"],
    "banger_doctor_checks": {"a": "dict, not a list of checks"},
    "banger_vmm_backends": [42],
    "banger_vm_validate": 42,
    "banger_vm_options": 42,
    "banger_vm_create": 42,
    "banger_vm_configure": 42,
    "banger_vm_set": 42,
    "banger_vm_started": 42,
    "banger_vm_ready_checks": "not-a-list",
    "banger_vm_stopped": 42,
    "banger_vm_deleted": 42,
    "banger_reconcile": 42,
    "banger_vm_dns_names": 42,
    "banger_guest_os": 42,
    "banger_image_provision": 42,
    "banger_image_artifacts": 42,
}


@hookimpl
def banger_config_defaults() -> Any:
    return GARBAGE["banger_config_defaults"]


@hookimpl
def banger_cli_commands() -> Any:
    return GARBAGE["banger_cli_commands"]


@hookimpl
def banger_cli_subcommands() -> Any:
    return GARBAGE["banger_cli_subcommands"]


@hookimpl
def banger_daemon_started() -> Any:
    return GARBAGE["banger_daemon_started"]


@hookimpl
def banger_daemon_stopping() -> Any:
    return GARBAGE["banger_daemon_stopping"]


@hookimpl
def banger_daemon_status() -> Any:
    return GARBAGE["banger_daemon_status"]


@hookimpl
def banger_rpc_methods() -> Any:
    return GARBAGE["banger_rpc_methods"]


@hookimpl
def banger_doctor_checks() -> Any:
    return GARBAGE["banger_doctor_checks"]


@hookimpl
def banger_vm_validate() -> Any:
    return GARBAGE["banger_vm_validate"]


@hookimpl
def banger_vm_options() -> Any:
    return GARBAGE["banger_vm_options"]


@hookimpl
def banger_vm_create() -> Any:
    return GARBAGE["banger_vm_create"]


@hookimpl
def banger_vm_configure() -> Any:
    return GARBAGE["banger_vm_configure"]


@hookimpl
def banger_vm_set() -> Any:
    return GARBAGE["banger_vm_set"]


@hookimpl
def banger_vm_started() -> Any:
    return GARBAGE["banger_vm_started"]


@hookimpl
def banger_vm_ready_checks() -> Any:
    return GARBAGE["banger_vm_ready_checks"]


@hookimpl
def banger_vm_stopped() -> Any:
    return GARBAGE["banger_vm_stopped"]


@hookimpl
def banger_vm_deleted() -> Any:
    return GARBAGE["banger_vm_deleted"]


@hookimpl
def banger_reconcile() -> Any:
    return GARBAGE["banger_reconcile"]


@hookimpl
def banger_vm_dns_names() -> Any:
    return GARBAGE["banger_vm_dns_names"]


@hookimpl
def banger_guest_os() -> Any:
    return GARBAGE["banger_guest_os"]


@hookimpl
def banger_image_provision() -> Any:
    return GARBAGE["banger_image_provision"]


@hookimpl
def banger_image_artifacts() -> Any:
    return GARBAGE["banger_image_artifacts"]


@hookimpl
def banger_vmm_backends() -> Any:
    return GARBAGE["banger_vmm_backends"]
